"""Game of 24 programs: tree of thought as in the ToT paper, and a chain-of-thought baseline.

A ToT step combines two of the remaining numbers: ``a op b = c (left: ...)``. The validator rejects a
step whose operands are not among the remaining numbers or whose arithmetic is wrong (exact
fractions). The numbers left are always recomputed from the steps, never read from the model's
"(left: ...)" text, and shown to the model with each state. A state with one number left is terminal;
its value is 1 if that number is 24, else 0. The final expression is rebuilt from the steps and
checked by ``checking.game24_check``; other states are valued by the LM (sure/likely/impossible).
"""

from __future__ import annotations

import re
from fractions import Fraction

import dspy

from reasonflow.checking import game24_check
from reasonflow.registry import register
from reasonflow.search import Task
from reasonflow.search.task import Verdict
from reasonflow.strategies import ChainOfThought, SelfConsistency, TreeOfThought

_NUM = r"-?\d+(?:\.\d+)?"
_STEP = re.compile(rf"^\s*({_NUM})\s*([-+*/×÷x])\s*({_NUM})\s*=\s*({_NUM}(?:/\d+)?)")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}
TOLERANCE = Fraction(1, 10_000)  # decimals the model writes for fractions (8/3 ~ 2.6667)


class SolveGame24(dspy.Signature):
    """Use each of the four numbers exactly once, with + - * / and parentheses, to make 24.
    Give one arithmetic expression."""

    question: str = dspy.InputField(desc="four numbers")
    answer: str = dspy.OutputField(desc="an expression such as (4 + 8) * (6 - 4)", max_chars=60)


class ProposeGame24Step(dspy.Signature):
    """Game of 24: pick two of the numbers left and combine them with + - * or / to get a new number.
    Write exactly one step as "a op b = c (left: remaining numbers)"."""

    question: str = dspy.InputField(desc="the four starting numbers")
    steps: str = dspy.InputField(desc="steps so far, then the numbers left")
    next_step: str = dspy.OutputField(desc="e.g. 4 + 8 = 12 (left: 6 12)", max_chars=60)


class ValueGame24(dspy.Signature):
    """Game of 24: judge whether the numbers left can still reach 24 with + - * /:
    sure, likely or impossible."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField(desc="steps so far, then the numbers left")
    verdict: Verdict = dspy.OutputField()


def _number(text: str) -> Fraction:
    return Fraction(text)


def _fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.4g}"


def _take(pool: list[tuple[Fraction, str]], value: Fraction) -> tuple[Fraction, str] | None:
    for i, (v, expr) in enumerate(pool):
        if abs(v - value) <= TOLERANCE:
            return pool.pop(i)
    return None


def apply_step(pool: list[tuple[Fraction, str]], step: str) -> list[tuple[Fraction, str]] | None:
    """The (value, expression) pool after ``step``, or None when the step is illegal."""
    match = _STEP.match(step.replace("×", "*").replace("÷", "/"))
    if not match:
        return None
    a_txt, op, b_txt, c_txt = match.groups()
    op = "*" if op in "x×" else "/" if op == "÷" else op
    pool = list(pool)
    a, b = _take(pool, _number(a_txt)), _take(pool, _number(b_txt))
    if a is None or b is None or (op == "/" and b[0] == 0):
        return None
    c = _OPS[op](a[0], b[0])
    if abs(c - Fraction(c_txt)) > TOLERANCE:
        return None
    return pool + [(c, f"({a[1]} {op} {b[1]})")]


def state(question: str, steps: list[str]) -> list[tuple[Fraction, str]] | None:
    pool = [(Fraction(int(n)), n) for n in question.split()]
    for step in steps:
        pool = apply_step(pool, step)
        if pool is None:
            return None
    return pool


def valid_step(question: str, steps: list[str], step: str) -> bool:
    pool = state(question, steps)
    return pool is not None and len(pool) > 1 and apply_step(pool, step) is not None


def render(question: str, steps: list[str]) -> str:
    pool = state(question, steps) or []
    return "\n".join(steps + [f"left: {' '.join(_fmt(v) for v, _ in pool)}"])


def terminal(question: str, steps: list[str]) -> bool:
    pool = state(question, steps)
    return pool is not None and len(pool) == 1


def value(question: str, steps: list[str]) -> float | None:
    pool = state(question, steps)
    if pool is None:
        return 0.0
    return (1.0 if pool[0][0] == 24 else 0.0) if len(pool) == 1 else None


def final_answer(question: str, steps: list[str]) -> str | None:
    pool = state(question, steps)
    if pool is None or len(pool) != 1:
        return None
    expr = pool[0][1]
    expr = expr[1:-1] if expr.startswith("(") and expr.endswith(")") else expr
    return expr if game24_check(expr, question) else None


def _equivalent(a, b) -> bool:
    return str(a).replace(" ", "") == str(b).replace(" ", "")


GAME24 = Task("game24", solve=SolveGame24, propose=ProposeGame24Step, value=ValueGame24, equivalent=_equivalent,
              validate_step=valid_step, value_fn=value, is_terminal=terminal, final_answer=final_answer,
              render=render)


@register("game24.cot", kind="game24")
def cot(**options):
    """Chain-of-thought baseline: one expression in one go."""
    return ChainOfThought(GAME24, **options)


@register("game24.sc", kind="game24")
def sc(k: int = 8, **options):
    """Self-consistency over k sampled expressions."""
    return SelfConsistency(GAME24, k=k, **options)


@register("game24.tot", kind="game24")
def tot(breadth: int = 5, proposals: int = 8, **options):
    """Tree of thought as in the paper: 3 steps, breadth 5, LM value sure/likely/impossible."""
    return TreeOfThought(GAME24, breadth=breadth, depth=3, proposals=proposals, **options)
