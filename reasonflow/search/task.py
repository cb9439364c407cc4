"""``Task``: what a search strategy needs to know about a problem family, as data.

A task bundles the DSPy signatures a strategy's predictors use (solve, propose, value, vote, answer,
judge) with optional pure Python hooks: a step validator that prunes illegal moves, a programmatic
value, a terminal test and a programmatic final answer. Strategies are generic; ``programs/*.py``
declare tasks (GSM8K, Game of 24, MATH) and register programs built from them.

An **action space** makes every proposal legal by construction: ``actions`` lists a state's legal next
steps (sent as a JSON-schema ``enum`` for guided decoding), or ``step_pattern`` gives a regex for
open-ended steps (sent as a ``pattern``). With ``actions``, the baselines ``policy="random"`` (uniform
legal moves, no LM) and, given ``exact_value``, ``policy="exact"`` (a perfect model) run the same search.

Not guaranteed: hooks run in the event loop's thread, so they must be fast and pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal

import dspy

from reasonflow.checking import majority_vote

Verdict = Literal["sure", "likely", "impossible"]
# The ToT paper's value prompt classes, mapped to [0, 1] (the paper used 20 / 1 / 0.001 and summed).
VERDICT_VALUE: dict[str, float] = {"sure": 1.0, "likely": 0.5, "impossible": 0.0}


def _alternatives(logprobs) -> list[tuple[str, list[tuple[str, float]]]]:
    """(token, [(alternative, logprob), ...]) per generated position, from an OpenAI ``logprobs``
    object or its dict form; [] when there are none."""
    content = getattr(logprobs, "content", None) if not isinstance(logprobs, dict) else logprobs.get("content")
    out = []
    for pos in content or []:
        get = pos.get if isinstance(pos, dict) else (lambda k, p=pos: getattr(p, k, None))
        tops = [(t.get("token") if isinstance(t, dict) else t.token, t.get("logprob") if isinstance(t, dict) else t.logprob)
                for t in get("top_logprobs") or []]
        out.append((get("token") or "", tops or [(get("token") or "", get("logprob") or 0.0)]))
    return out


def verdict_probabilities(logprobs, field: str = "verdict", classes=tuple(VERDICT_VALUE)) -> dict[str, float] | None:
    """The model's distribution over ``classes`` for the JSON ``field``, read from the top logprobs at
    the position where the field's value starts (after ``"field":`` or ``"field":"``, whichever
    position offers a class); None when no position does.

    An alternative token counts for the one class it is a prefix of (``"s"`` -> sure, ``"imp"`` ->
    impossible); tokens that fit no class or several are ignored, and the rest renormalised. A pure
    function over the logprobs, so the value of a state does not depend on which verdict was sampled.
    """
    opener, text = f'"{field}":', ""
    for token, alternatives in _alternatives(logprobs):
        head = text.replace(" ", "")
        if head.endswith(opener) or head.endswith(opener + '"'):
            quoted = head.endswith('"')
            mass = dict.fromkeys(classes, 0.0)
            for alt, logprob in alternatives:
                word = alt.strip()
                if not quoted:
                    if not word.startswith('"'):
                        continue
                    word = word[1:]
                fits = [c for c in classes if word and (c.startswith(word) or word.startswith(c))]
                if len(fits) == 1 and logprob is not None:
                    mass[fits[0]] += math.exp(logprob)
            total = sum(mass.values())
            if total > 0:
                return {c: m / total for c, m in mass.items()}
            # no class here: the quote came as a token of its own; the value starts at the next one
        text += token
    return None


def sequence_confidence(logprobs) -> float | None:
    """The model's confidence in one sampled completion: exp of the mean log-probability of its
    generated tokens (the geometric-mean token probability, so length does not decide), from an OpenAI
    ``logprobs`` object or its dict form; None when there are none."""
    content = getattr(logprobs, "content", None) if not isinstance(logprobs, dict) else logprobs.get("content")
    values = []
    for pos in content or []:
        value = pos.get("logprob") if isinstance(pos, dict) else getattr(pos, "logprob", None)
        if isinstance(value, (int, float)) and math.isfinite(value):
            values.append(value)
    return math.exp(sum(values) / len(values)) if values else None


def expected_verdict_value(probabilities: dict[str, float]) -> float:
    """The value of a state under a verdict distribution: sum of p(verdict) * VERDICT_VALUE."""
    return sum(p * VERDICT_VALUE.get(c, 0.0) for c, p in probabilities.items())


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
    answer: type[dspy.Signature] | None = Answer  # None: the answer is only ever read off the steps
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
    # (question, steps) -> the predictors' input fields for a state (default: question and rendered steps).
    inputs: Callable[[str, list[str]], dict] | None = None
    # (question, steps) -> the state's identity: states with equal keys are one state (default: the steps).
    state_key: Callable[[str, list[str]], str] | None = None
    # (question, steps) -> every legal next step: proposals are guided to exactly these.
    actions: Callable[[str, list[str]], list[str]] | None = None
    # (question, steps) -> a regex every next step must match (open-ended steps), when no ``actions``.
    step_pattern: Callable[[str, list[str]], str] | None = None
    # (question, steps) -> the exact value in [0, 1] (1: the answer is still reachable): policy="exact".
    exact_value: Callable[[str, list[str]], float] | None = None
    metadata: dict = field(default_factory=dict, compare=False)


def tally(task: Task, answers: list):
    """Majority vote over answers with the task's equivalence (see ``checking.majority_vote``)."""
    return majority_vote(answers, task.equivalent)
