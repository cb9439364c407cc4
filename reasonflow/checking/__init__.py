"""Answer checking: extract final answers, decide equivalence, vote, and validate Game of 24.

What it does: ``extract_number``/``numbers_equal`` for GSM8K-style numbers, ``extract_boxed`` and
``math_equal`` (Math-Verify, bounded by a killable worker process) for MATH-style LaTeX,
``game24_check`` for Game of 24 expressions, ``check(kind, pred, gold)`` to pick one by name, and
``majority_vote`` (and ``weighted_vote``) for self-consistency. Everything except ``math_equal`` is a pure function.

How to run::

    from reasonflow.checking import check, majority_vote, numeric_equivalent
    check("number", "So she pays $1,000.", "1000")            # True
    check("latex", r"\\boxed{\\frac{1}{2}}", "0.5")              # True
    majority_vote(["18", "18.0", "20"], numeric_equivalent).answer   # "18"

What it does not guarantee: a verdict is only as good as the extractor (see ``numeric`` for the
forms it reads) and Math-Verify's notion of equivalence; a ``math_equal`` call that overruns its
budget answers False. ``regex_only_number`` is a deliberately naive baseline, not a checker.
"""

from reasonflow.checking.answers import present, unusable_reason, usable
from reasonflow.checking.game24 import game24_check
from reasonflow.checking.latex import DEFAULT_CHECK_TIMEOUT_S, extract_boxed, math_equal
from reasonflow.checking.numeric import extract_number, numbers_equal, numeric_equivalent, regex_only_number
from reasonflow.checking.registry import CHECKERS, check
from reasonflow.checking.vote import VoteResult, majority_vote, weighted_vote

__all__ = [
    "CHECKERS",
    "DEFAULT_CHECK_TIMEOUT_S",
    "VoteResult",
    "check",
    "extract_boxed",
    "extract_number",
    "game24_check",
    "majority_vote",
    "math_equal",
    "numbers_equal",
    "numeric_equivalent",
    "present",
    "regex_only_number",
    "unusable_reason",
    "usable",
    "weighted_vote",
]
