"""Game of 24 programs: tree of thought as in the ToT paper, over the game's legal moves, and CoT.

A ToT step is a move ``a op b = c`` on the numbers left. The moves are the task's action space
(``checking.game24.legal_moves``: results computed exactly, fractions written ``8/3``), so the
proposer is guided to legal moves only, and the model sees just the numbers left: a state is the
multiset of numbers, whichever path reached it (states with the same numbers are one state). A state
with one number left is terminal, valued 1 if it is 24; other states are valued by the LM (by its
verdict probabilities, ``value_scoring="logprob"``). With two numbers left the value first writes
its own trials, each move ``a op b = c`` it can make (the ToT paper's value prompt does the same),
so the verdict follows a computed ``8 * 3 = 24`` rather than a one-token guess; the results in the
trials are the model's own, not the task's. The final expression is rebuilt from the moves and
checked by ``checking.game24_check``. ``game24.tot:random`` and ``game24.tot:exact`` run the
same search with a uniform random policy and with a perfect one (``checking.game24.reachable``).
"""

from __future__ import annotations

import re
from fractions import Fraction

import dspy

from reasonflow.checking import game24_check
from reasonflow.checking.game24 import fmt_number, legal_moves, reachable, start_state
from reasonflow.registry import register
from reasonflow.search import Task
from reasonflow.search.task import Verdict
from reasonflow.strategies import ChainOfThought, SelfConsistency, TreeOfThought

_OPERAND = r"\d+(?:/\d+)?"
TRIALS_MAX_CHARS = 128  # the longest two-number trials of rows 1-1000 (checking.game24.value_trials) have 95
_MOVE = re.compile(rf"^({_OPERAND}) ([-+*/]) ({_OPERAND}) = ({_OPERAND})$")


class SolveGame24(dspy.Signature):
    """Use each of the four numbers exactly once, with + - * / and parentheses, to make 24.
    Give one arithmetic expression."""

    question: str = dspy.InputField(desc="four numbers")
    answer: str = dspy.OutputField(desc="an expression such as (4 + 8) * (6 - 4)", max_chars=60)


class ProposeGame24Step(dspy.Signature):
    """Game of 24: combine two of the numbers with + - * or / so that 24 can still be made from the
    numbers left. Give one move."""

    numbers: str = dspy.InputField(desc="the numbers left")
    next_step: str = dspy.OutputField(desc="a move, e.g. 4 + 8 = 12", max_chars=40)


class ValueGame24(dspy.Signature):
    """Game of 24: can these numbers still make 24, each used once, with + - * /?
    With two numbers left, first try each move. Answer sure, likely or impossible."""

    numbers: str = dspy.InputField(desc="the numbers left")
    trials: str = dspy.OutputField(desc="with two numbers left, each move a op b = c until one makes 24; "
                                        "otherwise empty", max_chars=TRIALS_MAX_CHARS)
    verdict: Verdict = dspy.OutputField()


def numbers_left(question: str, steps: list[str]) -> tuple[Fraction, ...] | None:
    """The numbers left after ``steps`` (sorted), or None when a step is not a legal move."""
    state = start_state(question)
    for step in steps:
        after = dict(legal_moves(state)).get(step.strip())
        if after is None:
            return None
        state = after
    return state


def _text(state) -> str:
    return " ".join(fmt_number(v) for v in state)


def actions(question: str, steps: list[str]) -> list[str]:
    state = numbers_left(question, steps)
    return [text for text, _ in legal_moves(state)] if state and len(state) > 1 else []


def inputs(question: str, steps: list[str]) -> dict:
    return {"numbers": _text(numbers_left(question, steps) or ())}


def state_key(question: str, steps: list[str]) -> str:
    state = numbers_left(question, steps)
    return _text(state) if state is not None else "illegal: " + " | ".join(steps)


def render(question: str, steps: list[str]) -> str:
    return "\n".join(steps + [f"left: {_text(numbers_left(question, steps) or ())}"])


def terminal(question: str, steps: list[str]) -> bool:
    state = numbers_left(question, steps)
    return state is not None and len(state) == 1


def exact_value(question: str, steps: list[str]) -> float:
    state = numbers_left(question, steps)
    return float(state is not None and reachable(state))


def value(question: str, steps: list[str]) -> float | None:
    state = numbers_left(question, steps)
    if state is None:
        return 0.0
    return float(state[0] == 24) if len(state) == 1 else None


def final_answer(question: str, steps: list[str]) -> str | None:
    """The expression the moves build, e.g. ``(4 + 8) * (6 - 4)``, if it checks as a solution."""
    pool = [(Fraction(n), n) for n in question.split()]
    for step in steps:
        match = _MOVE.match(step.strip())
        if not match:
            return None
        a, op, b, _ = match.groups()
        exprs = []
        for operand in (Fraction(a), Fraction(b)):
            i = next((i for i, (v, _) in enumerate(pool) if v == operand), None)
            if i is None:
                return None
            exprs.append(pool.pop(i)[1])
        pool.append((Fraction(match.group(4)), f"({exprs[0]} {op} {exprs[1]})"))
    if len(pool) != 1:
        return None
    expr = pool[0][1]
    expr = expr[1:-1] if expr.startswith("(") and expr.endswith(")") else expr
    return expr if game24_check(expr, question) else None


def _equivalent(a, b) -> bool:
    return str(a).replace(" ", "") == str(b).replace(" ", "")


GAME24 = Task("game24", solve=SolveGame24, propose=ProposeGame24Step, value=ValueGame24, answer=None, equivalent=_equivalent,
              value_fn=value, is_terminal=terminal, final_answer=final_answer, render=render, inputs=inputs,
              state_key=state_key, actions=actions, exact_value=exact_value)


@register("game24.cot", kind="game24")
def cot(**options):
    """Chain-of-thought baseline: one expression in one go."""
    return ChainOfThought(GAME24, **options)


@register("game24.sc", kind="game24")
def sc(k: int = 8, **options):
    """Self-consistency over k sampled expressions."""
    return SelfConsistency(GAME24, k=k, **options)


@register("game24.tot", kind="game24")
def tot(breadth: int = 5, proposals: int = 8, depth: int = 3, value_scoring: str = "logprob", **options):
    """Tree of thought as in the paper (3 moves, breadth 5, 8 proposals), over the legal moves,
    states ranked by the LM's verdict probabilities (sure/likely/impossible)."""
    return TreeOfThought(GAME24, breadth=breadth, depth=depth, proposals=proposals, value_scoring=value_scoring,
                         **options)
