"""Search strategies, one per file, each a ``dspy.Module`` built from a ``Task``.

Each strategy class declares its own facts (``name``, ``Options``, ``size_option``, ``grid``) and
registers itself with ``@register_strategy``; ``STRATEGIES`` (``reasonflow.registry``) is the table the
CLI, the bench, the compiler and the server read. Adding a strategy is one file here and one import line
below; ``__all__`` (and so ``reasonflow.__all__``) follows the registry.
"""

from reasonflow.registry import STRATEGIES
from reasonflow.strategies.bon import BestOfN
from reasonflow.strategies.cot import ChainOfThought
from reasonflow.strategies.dfs import DFS
from reasonflow.strategies.mcts import MCTS
from reasonflow.strategies.pot import ProgramOfThought
from reasonflow.strategies.refine import SelfRefine
from reasonflow.strategies.sc import SelfConsistency
from reasonflow.strategies.tot import TreeOfThought

# Every registered strategy class (``reasonflow`` re-exports them): a new one needs no edit here.
__all__ = sorted(cls.__name__ for cls in STRATEGIES.values())
