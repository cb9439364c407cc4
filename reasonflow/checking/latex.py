"""LaTeX answers: the last \\boxed{...}, and Math-Verify equivalence bounded in wall time.

What it does: ``math_equal(pred, gold)`` asks Math-Verify whether two answers denote the same
mathematical object (``\\frac{1}{2}`` and 0.5, ``x=3`` and 3, ``(1,2]`` and ``(1, 2]``). The call runs
in a worker process from a small persistent pool; if it overruns ``timeout_s`` the worker is killed
and the answer is False. Math-Verify's own SIGALRM timeouts are switched off, since they only work on
the main thread. ``extract_boxed`` returns the content of the last ``\\boxed{}``/``\\fbox{}``.

How to run: ``math_equal(r"\\boxed{\\frac{1}{2}}", "0.5")`` from any thread. It blocks for up to
``timeout_s``; from async code call ``await asyncio.to_thread(math_equal, pred, gold)``.

What it does not guarantee: the verdict is Math-Verify's, including its leniencies (a percentage
matches both its value and its value over 100: ``50\\%`` equals both 0.5 and 50). A timed-out check
is False even when the answers are equal. ``timeout_s`` bounds the call, the queue for a free worker
included, but not a fresh worker's start-up (about a second, at most ``DEFAULT_CHECK_START_TIMEOUT_S``,
paid by the first call and by the first call after a timeout); the check's own budget is CPU time
and verdicts are kept, so the same input gets the same verdict under any load (see ``_pool``). Only the last
``DEFAULT_CHECK_MAX_CHARS`` characters of each answer are read.
"""

from __future__ import annotations

import atexit
import re

from reasonflow.checking._pool import WorkerPool
from reasonflow.errors import ConfigError

DEFAULT_CHECK_TIMEOUT_S = 5.0  # one comparison; Math-Verify's own default
DEFAULT_CHECK_START_TIMEOUT_S = 60.0  # a fresh worker importing sympy on a loaded 2-core machine
DEFAULT_CHECK_WORKERS = 2  # worker processes alive at once; checks beyond this queue
DEFAULT_CHECK_WORKER_MEMORY_BYTES = 1 << 30  # address-space cap per worker (it runs in 300 MB)
DEFAULT_CHECK_MAX_CHARS = 20_000  # the tail of a completion holds its answer

_POOL = WorkerPool(DEFAULT_CHECK_WORKERS, DEFAULT_CHECK_START_TIMEOUT_S, DEFAULT_CHECK_WORKER_MEMORY_BYTES)
atexit.register(_POOL.close)

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _closing_brace(text: str, start: int) -> int | None:
    """Index of the brace closing the group opened just before ``start``; a backslash escapes."""
    depth, i = 1, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def extract_boxed(text: str | None) -> str | None:
    """The stripped content of the last closed ``\\boxed{...}`` or ``\\fbox{...}``, or None.

    Tie-break: "last" means the box that opens last, so ``\\boxed{\\boxed{3}}`` gives "3"; a box left
    unclosed (a truncated completion) is skipped in favour of the one before it.
    """
    # Hand-written rather than latex2sympy2_extended's extract_boxed_content, which returns the
    # whole text when there is no box and joins nearby boxes ("3,4"); callers here need None and one box.
    if not text:
        return None
    for match in reversed(list(_BOX.finditer(text))):
        end = _closing_brace(text, match.end())
        if end is not None:
            return text[match.end() : end].strip()
    return None


_ANCHOR = re.compile(r"(?<!\\)\$|\\boxed|\\fbox|\\\(|\\\[")
_TEXT_GROUP = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname|begin|end)\s*\{[^{}]*\}")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{3,}")


def anchored(text: str) -> str:
    """``text`` as Math-Verify should read it: bare LaTeX wrapped in ``$...$``, anything else as is.

    Math-Verify extracts LaTeX reliably only between anchors: unwrapped, ``(1,2]`` parses as 2,
    ``\\dfrac{3}{4}`` as nothing and ``50\\%`` as 50. Prose must stay unwrapped, or "18 dollars"
    becomes a product of symbols. Rule: text with ``$``, ``\\boxed``, ``\\fbox``, ``\\(`` or ``\\[`` is
    kept; text with a word of 3+ letters outside LaTeX commands, ``\\text{...}`` and
    ``\\begin{...}`` is prose and kept; the rest is wrapped. On MATH-500, reading the golds unwrapped
    fails 108 of 500 solution-vs-answer checks; with this rule, none.
    """
    if _ANCHOR.search(text):
        return text
    if _WORD.search(_COMMAND.sub(" ", _TEXT_GROUP.sub(" ", text))):
        return text
    return f"${text}$"


def math_equal(pred, gold, timeout_s: float = DEFAULT_CHECK_TIMEOUT_S) -> bool:
    """Whether Math-Verify finds ``pred`` equivalent to ``gold``; False on timeout or no answer.

    ``pred`` may be a whole completion (Math-Verify finds its boxed or announced answer) or a bare
    answer; ``gold`` is usually a bare answer. Numbers are accepted and read as text. Safe from any
    thread: the work runs in a worker process that is killed after ``timeout_s``.
    Raises ``ConfigError`` for a non-positive ``timeout_s`` or when no worker can start.
    """
    if not timeout_s or timeout_s <= 0:
        raise ConfigError(f"timeout_s must be > 0, got {timeout_s!r}")
    if pred is None or gold is None:
        return False
    pred_text, gold_text = str(pred).strip(), str(gold).strip()
    if not pred_text or not gold_text:
        return False
    pred_text = anchored(pred_text[-DEFAULT_CHECK_MAX_CHARS:])
    gold_text = anchored(gold_text[-DEFAULT_CHECK_MAX_CHARS:])
    return _POOL.equal(pred_text, gold_text, timeout_s)
