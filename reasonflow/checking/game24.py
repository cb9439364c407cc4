"""Game of 24: is an arithmetic expression a valid solution for a puzzle's numbers?

What it does: ``game24_check("(6 - 4) * (1 + 11)", "4 6 1 11")`` parses the expression with ``ast``,
walks only integer literals, the four binary operators and parentheses, checks that the literals are
exactly the puzzle's numbers (each used once) and evaluates with ``fractions.Fraction``, so
``8 / (3 - 8 / 3)`` is exactly 24. Nothing is ever passed to ``eval``.

How to run: a pure function; ``game24_check("4*6 = 24", [4, 6])`` is True.

``legal_moves``, ``reachable`` and ``good_moves`` are the game's rules as data, over states (the
multiset of numbers left): the action space a tree search proposes from, and the exact solver the
baselines and the fine-tuning labels use.

What it does not guarantee: the usual rules only. Unary minus, exponents, decimals, concatenated
digits ("11" from 1 and 1) and implicit multiplication are all invalid. Expressions longer than
``MAX_EXPRESSION_CHARS`` are invalid without being parsed.
"""

from __future__ import annotations

import ast
import functools
import re
from collections import Counter
from fractions import Fraction

from reasonflow.errors import ConfigError

TARGET = 24
MAX_EXPRESSION_CHARS = 200  # four numbers need ~30 characters; this keeps ast.parse trivially cheap

_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,  # Fraction division; b == 0 raises ZeroDivisionError
}
# Typographic and LaTeX spellings of the operators a model writes. A letter x counts as "times" only
# between operands, so a stray identifier still fails to parse rather than becoming an operator.
_SPELLINGS = [
    (re.compile(r"\\times|\\cdot|[×·∗]"), "*"),
    (re.compile(r"(?<=[\d)\s])[xX](?=[\d(\s])"), "*"),
    (re.compile(r"\\div|÷"), "/"),
    (re.compile(r"[−–]"), "-"),
    (re.compile(r"\\left|\\right"), ""),
]
_EQUALS_TARGET = re.compile(r"=\s*24(?:\.0*)?\s*\.?\s*$")


class _Invalid(Exception):
    """The expression breaks a rule; game24_check turns this into False."""


def parse_numbers(numbers: str | list) -> list[int]:
    """The puzzle's numbers from "1 1 4 6", "1,1,4,6" or [1, 1, 4, 6]; ConfigError when malformed."""
    items = re.split(r"[\s,]+", numbers.strip()) if isinstance(numbers, str) else list(numbers)
    try:
        values = [int(item) for item in items if item != ""]
        if any(isinstance(item, float) and item != int(item) for item in items):
            raise ValueError("not an integer")
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"Game of 24 numbers must be integers like '1 1 4 6', got {numbers!r}") from exc
    if not values:
        raise ConfigError(f"Game of 24 needs at least one number, got {numbers!r}")
    return values


def _normalise(expression: str) -> str:
    text = expression.strip().strip("$").strip()
    for pattern, replacement in _SPELLINGS:
        text = pattern.sub(replacement, text)
    return _EQUALS_TARGET.sub("", text).strip()


def _evaluate(node: ast.AST, leaves: list[int]) -> Fraction:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, leaves)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        leaves.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left = _evaluate(node.left, leaves)
        right = _evaluate(node.right, leaves)
        return _OPERATORS[type(node.op)](left, right)
    raise _Invalid(f"{type(node).__name__} is not allowed")


def game24_check(expression: str | None, numbers: str | list) -> bool:
    """Whether ``expression`` uses each of ``numbers`` exactly once and evaluates to exactly 24.

    Accepts ``×``, ``÷``, ``x``, ``\\times``, ``\\div`` and a trailing "= 24". Anything else (a name,
    a call, ``**``, a reused or missing number, division by zero) gives False.
    """
    puzzle = Counter(parse_numbers(numbers))
    if not expression or len(expression) > MAX_EXPRESSION_CHARS:
        return False
    leaves: list[int] = []
    try:
        tree = ast.parse(_normalise(str(expression)), mode="eval")
        value = _evaluate(tree, leaves)
    except (_Invalid, SyntaxError, ValueError, ZeroDivisionError, RecursionError, MemoryError):
        return False
    return Counter(leaves) == puzzle and value == TARGET


# --- the game's moves, for action spaces and exact baselines --------------------------------------
# A state is the multiset of numbers left, as a sorted tuple of Fractions. A move combines two of
# them with + or * (once per pair), larger minus smaller (no negatives: they never help reach 24
# that a reordered subtraction cannot), and division either way (non-zero divisor). Results are
# exact fractions, written "8/3".


def fmt_number(value: Fraction) -> str:
    """``8`` or ``8/3``: how a number left is written in moves and states."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def start_state(numbers: str | list) -> tuple[Fraction, ...]:
    return tuple(sorted(Fraction(n) for n in parse_numbers(numbers)))


def legal_moves(state: tuple[Fraction, ...]) -> list[tuple[str, tuple[Fraction, ...]]]:
    """Every legal move of ``state`` as (text, state after), in a fixed order, one per distinct text.

    Text is ``"a op b = c"`` with the numbers written by ``fmt_number``; the order is by pair, then
    ``+ - * /`` (so a seeded uniform choice over it is reproducible)."""
    moves: dict[str, tuple[Fraction, ...]] = {}
    for i in range(len(state)):
        for j in range(i + 1, len(state)):
            a, b = max(state[i], state[j]), min(state[i], state[j])
            rest = state[:i] + state[i + 1:j] + state[j + 1:]
            results = [("+", a, b, a + b), ("-", a, b, a - b), ("*", a, b, a * b)]
            results += [("/", a, b, a / b)] if b else []
            results += [("/", b, a, b / a)] if a and a != b else []
            for op, x, y, c in results:
                text = f"{fmt_number(x)} {op} {fmt_number(y)} = {fmt_number(c)}"
                moves.setdefault(text, tuple(sorted(rest + (c,))))
    return list(moves.items())


@functools.lru_cache(maxsize=200_000)
def reachable(state: tuple[Fraction, ...]) -> bool:
    """Whether 24 can still be made from ``state`` (exhaustive search, memoised)."""
    if len(state) == 1:
        return state[0] == TARGET
    return any(reachable(after) for _, after in legal_moves(state))


def value_trials(state: tuple[Fraction, ...]) -> str:
    """What the Game of 24 value writes before its verdict (the target it is trained on): with two
    numbers left, its moves in ``legal_moves`` order (``a + b``, ``a - b``, ``a * b``, ``a / b``, the
    larger number first) up to the first that makes 24, joined by ", "; with more, nothing. The
    smaller / larger division is left out: it is never 24 (numbers left are never negative)."""
    if len(state) != 2:
        return ""
    low = fmt_number(min(state))
    out = []
    for text, after in legal_moves(state):
        if state[0] != state[1] and text.startswith(f"{low} / "):
            continue
        out.append(text)
        if after[0] == TARGET:
            break
    return ", ".join(out)


def good_moves(state: tuple[Fraction, ...]) -> list[str]:
    """The moves of ``state`` after which 24 is still reachable (the exact policy's choices)."""
    return [text for text, after in legal_moves(state) if reachable(after)]
