"""``Task``: what a search strategy needs to know about a problem family, as data.

A task bundles the DSPy signatures a strategy's predictors use (solve, propose, value, vote, answer,
judge) with optional pure Python hooks: a step validator that prunes illegal moves, a programmatic
value, a terminal test and a programmatic final answer. Strategies are generic; ``programs/*.py``
declare tasks (GSM8K, Game of 24, MATH) and register programs built from them.

Not guaranteed: hooks run in the event loop's thread, so they must be fast and pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import dspy

from reasonflow.checking import majority_vote

Verdict = Literal["sure", "likely", "impossible"]
# The ToT paper's value prompt classes, mapped to [0, 1] (the paper used 20 / 1 / 0.001 and summed).
VERDICT_VALUE: dict[str, float] = {"sure": 1.0, "likely": 0.5, "impossible": 0.0}


class Solve(dspy.Signature):
    """Solve the problem. Think step by step, briefly, then give the final answer."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


class Propose(dspy.Signature):
    """Given a problem and the steps so far, write only the next step of the solution."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField(desc="the steps so far, one per line (empty at the start)")
    next_step: str = dspy.OutputField(desc="one short step", max_chars=200)


class Value(dspy.Signature):
    """Judge whether the steps so far can still reach the correct answer: sure, likely or impossible."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField()
    verdict: Verdict = dspy.OutputField()


class Vote(dspy.Signature):
    """Several candidate partial solutions are numbered below. Choose the most promising one."""

    question: str = dspy.InputField()
    candidates: str = dspy.InputField(desc="numbered candidates, one per line")
    best: int = dspy.OutputField(desc="the number of the best candidate")


class Answer(dspy.Signature):
    """Given a problem and its worked steps, give the final answer."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField()
    answer: str = dspy.OutputField(max_chars=100)


class Judge(dspy.Signature):
    """Is the proposed answer to the problem correct? Give a probability between 0 and 1."""

    question: str = dspy.InputField()
    reasoning: str = dspy.InputField()
    answer: str = dspy.InputField()
    correct_probability: float = dspy.OutputField()


def _exact(a, b) -> bool:
    return str(a).strip() == str(b).strip()


@dataclass(frozen=True)
class Task:
    """Signatures plus pure hooks for one problem family. Every hook is optional."""

    name: str
    solve: type[dspy.Signature] = Solve
    propose: type[dspy.Signature] = Propose
    value: type[dspy.Signature] = Value
    vote: type[dspy.Signature] = Vote
    answer: type[dspy.Signature] = Answer
    judge: type[dspy.Signature] = Judge
    equivalent: Callable[[object, object], bool] = _exact
    # (question, steps, new_step) -> False to prune the move before any LM evaluates it.
    validate_step: Callable[[str, list[str], str], bool] | None = None
    # (question, steps) -> value in [0, 1], or None to ask the LM.
    value_fn: Callable[[str, list[str]], float | None] | None = None
    # (question, steps) -> True when the state needs no further steps.
    is_terminal: Callable[[str, list[str]], bool] | None = None
    # (question, steps) -> the final answer read off the steps, or None to ask the LM.
    final_answer: Callable[[str, list[str]], str | None] | None = None
    # (question, steps) -> the text the predictors see as ``steps`` (default: one step per line).
    render: Callable[[str, list[str]], str] | None = None
    metadata: dict = field(default_factory=dict, compare=False)


def tally(task: Task, answers: list):
    """Majority vote over answers with the task's equivalence (see ``checking.majority_vote``)."""
    return majority_vote(answers, task.equivalent)
