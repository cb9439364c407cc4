"""Numeric answers: pull the final number out of free text and compare two numbers exactly.

What it does: ``extract_number`` finds the final numeric answer in a completion ("The answer is
$1,000.", "#### 18", "3/4 of a cake") and returns it as a canonical string; ``numbers_equal``
compares two answers as exact fractions with a relative tolerance. ``regex_only_number`` is the naive
last-number baseline, kept only so documentation can show what the careful extractor fixes.

How to run: pure functions over strings, e.g. ``extract_number("It costs $18.00.") == "18"``.

What it does not guarantee: it reads plain digits only ("1,000", "-2.5", "3/4", "50%"), not number
words ("five"), scientific notation ("1e5"), space-grouped thousands ("1 000") or LaTeX; use
``math_equal`` for LaTeX. A percentage keeps its number and drops the sign ("50%" -> "50"), the way
GSM8K writes its golds, so "50%" does not equal "0.5" here.
"""

from __future__ import annotations

import ast
import re
from decimal import Decimal
from fractions import Fraction
from numbers import Number

from reasonflow.errors import ConfigError

DEFAULT_REL_TOL = 1e-6
# Numbers a word problem's program may use without the question stating them (ones, halves, weeks,
# dozens, days, weeks a year, hours, percent, days a year): bounded programs may write them, and
# augmentation never perturbs them.
UNIT_CONSTANTS = (1, 2, 7, 12, 24, 52, 60, 100, 365)
MAX_NUMBER_DIGITS = 200  # longer digit runs are not answers; also keeps int() under Python's str limit

# A sign counts only when it does not follow a word, digit or closing bracket ("5-3" is a subtraction,
# "COVID-19" a name). Thousands groups must be exact ("1,000" but not "1,00"), and an optional "/den"
# makes a fraction. A trailing "." is never consumed, so "42." reads as 42.
_NUMBER = re.compile(
    r"(?:(?<![\w)\]}])(?P<sign>[-\u2212]))?"
    r"\$?"
    r"(?<![\d.])(?P<body>\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:/(?P<den>\d+))?"
    r"(?P<pct>\s?%)?"
)
# Where an answer is announced, the number right after the last announcement wins.
_MARKERS = re.compile(r"####|answer\s+is|answer\s*:", re.IGNORECASE)


def _to_fraction(match: re.Match) -> Fraction | None:
    body = match["body"].replace(",", "")
    if len(body) > MAX_NUMBER_DIGITS or len(match["den"] or "") > MAX_NUMBER_DIGITS:
        return None
    value = Fraction(Decimal(body))
    if match["den"] is not None:
        if int(match["den"]) == 0:
            return None
        value /= int(match["den"])
    return -value if match["sign"] else value


def canonical(value: Fraction) -> str:
    """Canonical text of an exact number: "18", "-3", "0.75"; "p/q" when the decimal does not end."""
    num, den = value.numerator, value.denominator
    twos = fives = 0
    rest = den
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    if rest != 1:
        return f"{num}/{den}"
    places = max(twos, fives)  # den divides 10**places, so the decimal below is exact
    if places == 0:
        return str(num)
    digits = str(abs(num) * 10**places // den).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}".rstrip("0").rstrip(".")
    return f"-{text}" if num < 0 else text


def _numbers(text: str) -> list[Fraction]:
    values = (_to_fraction(m) for m in _NUMBER.finditer(text))
    return [v for v in values if v is not None]


def _extract_fraction(text: str) -> Fraction | None:
    markers = list(_MARKERS.finditer(text))
    if markers:
        after = _numbers(text[markers[-1].end():])
        if after:
            return after[0]
    found = _numbers(text)
    return found[-1] if found else None


def extract_number(text: str | None) -> str | None:
    """The final numeric answer in ``text`` as a canonical string, or None when there is none.

    Tie-break: after the last "####", "answer is" or "answer:", the first number following it;
    otherwise (or when nothing follows the marker) the last number in the text. Commas, a leading "$",
    units and a trailing "." are ignored; "3/4" becomes "0.75", "50%" becomes "50", "-0" becomes "0".
    """
    if not text:
        return None
    value = _extract_fraction(str(text))
    return None if value is None else canonical(value)


def _as_fraction(value) -> Fraction | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return _extract_fraction(value)
    if isinstance(value, Number):
        try:  # a float through its repr, so 0.1 is 1/10 and not its binary neighbour
            return Fraction(repr(value) if isinstance(value, float) else value)
        except (ValueError, OverflowError, TypeError):  # nan, inf, complex
            return None
    return None


def numbers_equal(pred, gold, rel_tol: float = DEFAULT_REL_TOL) -> bool:
    """Whether two answers are the same number, within ``rel_tol`` of the larger magnitude.

    Strings go through ``extract_number`` ("$18.00" equals 18); ints, floats, Decimals and Fractions
    are taken exactly. Anything without a number (None, "", "n/a", nan, bools) gives False. Zero only
    equals zero: the tolerance is relative, with no absolute floor.
    """
    if rel_tol < 0:
        raise ConfigError(f"rel_tol must be >= 0, got {rel_tol!r}")
    a, b = _as_fraction(pred), _as_fraction(gold)
    if a is None or b is None:
        return False
    return abs(a - b) <= Fraction(rel_tol) * max(abs(a), abs(b))


def numeric_equivalent(a, b) -> bool:
    """``numbers_equal`` with the default tolerance, shaped as ``majority_vote``'s ``equivalent``."""
    return numbers_equal(a, b)


def regex_only_number(text: str | None) -> str | None:
    """The naive baseline: the last match of ``-?\\d+\\.?\\d*`` in the text, as written, or None.

    Kept for documentation comparisons only. It reads "1,000" as "000", "The answer is 42." as "42.",
    "3/4" as "4" and "5-3" as "-3"; ``extract_number`` handles each of these.
    """
    if not text:
        return None
    found = re.findall(r"-?\d+\.?\d*", str(text))
    return found[-1] if found else None


MAX_POWER_EXPONENT = 10  # a calculator note like 2**1000000 is not arithmetic we run
_ARITHMETIC = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load, ast.Add, ast.Sub,
               ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd)


def eval_arithmetic(expr: str, env: dict[str, float]) -> float | None:
    """The value of an arithmetic expression over numbers and ``env``'s names, or None if it is not
    one (any call, attribute, comparison...), divides by zero or raises to a large power."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if not isinstance(node, _ARITHMETIC) or (isinstance(node, ast.Name) and node.id not in env):
            return None
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            exponent = node.right
            if not (isinstance(exponent, ast.Constant) and abs(exponent.value) <= MAX_POWER_EXPONENT):
                return None
    try:
        # Safe: the walk above admits only numbers, env names and arithmetic operators, no builtins.
        return float(eval(compile(tree, "<note>", "eval"), {"__builtins__": {}}, dict(env)))
    except (ArithmeticError, ValueError, TypeError):
        return None
