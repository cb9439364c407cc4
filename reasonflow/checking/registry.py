"""``check(kind, pred, gold)``: one entry point that picks the right checker by name.

What it does: looks ``kind`` up in ``CHECKERS`` ("number", "latex", "game24") and calls that checker.
A missing prediction (None, or blank text) is simply wrong, so it gives False without a call.

How to run: ``check("number", "The answer is 18.", "18")``; ``check("game24", "4*6", "4 6")`` (for
game24 the gold is the puzzle's numbers). Extra keywords go to the checker (``rel_tol``,
``timeout_s``).

What it does not guarantee: nothing beyond each checker's own contract; see their modules.
"""

from __future__ import annotations

from typing import Any, Callable

from reasonflow.checking.game24 import game24_check
from reasonflow.checking.latex import math_equal
from reasonflow.checking.numeric import numbers_equal
from reasonflow.errors import ConfigError

CHECKERS: dict[str, Callable[..., bool]] = {
    "number": numbers_equal,
    "latex": math_equal,
    "game24": game24_check,
}


def check(kind: str, pred: Any, gold: Any, **kw: Any) -> bool:
    """Whether ``pred`` is right against ``gold`` under checker ``kind``; ConfigError for an unknown kind."""
    checker = CHECKERS.get(kind)
    if checker is None:
        raise ConfigError(f"unknown check kind {kind!r}; choose one of {sorted(CHECKERS)}")
    if pred is None or (isinstance(pred, str) and not pred.strip()):
        return False
    return checker(pred, gold, **kw)
