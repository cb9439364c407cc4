"""Search strategies, one per file, each a ``dspy.Module`` built from a ``Task``.

``STRATEGIES`` is the one registry of strategy names; task programs (``programs/``) and
``reasonflow.registry`` build named programs from it.
"""

from reasonflow.strategies.bon import BestOfN
from reasonflow.strategies.cot import ChainOfThought
from reasonflow.strategies.dfs import DFS
from reasonflow.strategies.mcts import MCTS
from reasonflow.strategies.pot import ProgramOfThought
from reasonflow.strategies.sc import SelfConsistency
from reasonflow.strategies.tot import TreeOfThought

STRATEGIES = {
    "cot": ChainOfThought,
    "sc": SelfConsistency,
    "bon": BestOfN,
    "tot": TreeOfThought,
    "dfs": DFS,
    "mcts": MCTS,
    "pot": ProgramOfThought,
}

__all__ = ["STRATEGIES", "BestOfN", "ChainOfThought", "DFS", "MCTS", "ProgramOfThought", "SelfConsistency",
           "TreeOfThought"]
