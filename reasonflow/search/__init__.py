"""What ToT, beam, DFS and MCTS share: the task spec, one run's state and budget, one predictor call.

The extension surface is ``Task``, ``SearchStrategy`` and ``SearchRun`` (what ``search(run)`` gets),
``predict`` and ``tally``. Plumbing (``base.run_sync``, ``base.trace_listener``) stays in its module.
"""

from reasonflow.search.base import SearchRun, SearchStrategy
from reasonflow.search.calls import NodeCall, predict
from reasonflow.search.task import VERDICT_VALUE, Task, tally

__all__ = ["NodeCall", "predict", "SearchRun", "SearchStrategy", "Task", "VERDICT_VALUE", "tally"]
