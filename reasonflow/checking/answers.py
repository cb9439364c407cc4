"""Whether an answer can be used: the one rule the strategies, the vote, the bench and the server share.

    present("18")        # True: there is something to count (None and blank text are not)
    usable("nan")        # False: present, but a non-finite number (nan, inf, 1e309) is never an answer
    unusable_reason(None)  # "no answer"

Pure functions over plain values. Text that is not a number is usable as text (a LaTeX or Game of 24
answer). Not guaranteed: "usable" says nothing about "correct"; that is ``check``'s job.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any


def present(answer: Any) -> bool:
    """An answer at all: not None and not blank text."""
    return answer is not None and not (isinstance(answer, str) and not answer.strip())


def usable(answer: Any) -> bool:
    """An answer that can be voted on and returned: present, and not a non-finite number."""
    if not present(answer):
        return False
    if isinstance(answer, bool):
        return True
    if isinstance(answer, (int, float, Decimal)):
        try:
            return math.isfinite(answer)
        except (OverflowError, ValueError):
            return False
    if isinstance(answer, str):
        try:
            return math.isfinite(float(answer.strip().replace(",", "")))
        except ValueError:  # not a number at all: usable as text
            return True
    return True


def unusable_reason(answer: Any) -> str:
    """Why ``usable(answer)`` is False, in a few words."""
    if not present(answer):
        return "no answer"
    return f"the answer {str(answer)[:40]!r} is not a finite number"
