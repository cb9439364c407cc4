"""What ToT, beam, DFS and MCTS share: the task spec, one run's state and budget, the sync bridge."""

from reasonflow.search.base import SearchRun, SearchStrategy, run_sync, trace_listener
from reasonflow.search.calls import NodeCall, predict
from reasonflow.search.task import VERDICT_VALUE, Task, tally

__all__ = ["NodeCall", "predict", "SearchRun", "SearchStrategy", "Task", "VERDICT_VALUE", "run_sync", "tally", "trace_listener"]
