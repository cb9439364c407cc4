"""MATH programs (MATH-500, AIME): chain-of-thought, self-consistency and tree-of-thought, with the
final answer in LaTeX inside ``\\boxed{}`` and compared by Math-Verify."""

from __future__ import annotations

import dspy

from reasonflow.checking import extract_boxed, math_equal
from reasonflow.registry import register
from reasonflow.search import Task
from reasonflow.strategies import ChainOfThought, SelfConsistency, TreeOfThought


class SolveMath(dspy.Signature):
    """Solve the competition math problem. Reason briefly, step by step, then give the final answer
    in LaTeX inside \\boxed{}."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="the final answer, e.g. \\boxed{\\frac{1}{2}}", max_chars=120)


class ProposeMathStep(dspy.Signature):
    """Given a math problem and the steps so far, write only the next step (one short derivation).
    When the steps already give the result, write the answer as \\boxed{...}."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField(desc="the steps so far, one per line (empty at the start)")
    next_step: str = dspy.OutputField(max_chars=240)


class AnswerMath(dspy.Signature):
    """Given a math problem and its worked steps, give the final answer in LaTeX inside \\boxed{}."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField()
    answer: str = dspy.OutputField(max_chars=120)


def _terminal(question: str, steps: list[str]) -> bool:
    return bool(steps) and extract_boxed(steps[-1]) is not None


def _final(question: str, steps: list[str]) -> str | None:
    return extract_boxed(steps[-1]) if steps else None


def _equivalent(a, b) -> bool:
    return str(a).strip() == str(b).strip() or math_equal(str(a), str(b))


MATH = Task("math", solve=SolveMath, propose=ProposeMathStep, answer=AnswerMath, equivalent=_equivalent,
            is_terminal=_terminal, final_answer=_final)


@register("math.cot", kind="latex")
def cot(**options):
    """Chain of thought with a boxed LaTeX answer."""
    return ChainOfThought(MATH, **options)


@register("math.sc", kind="latex")
def sc(k: int = 8, **options):
    """Self-consistency: k chains in one request, vote by Math-Verify equivalence."""
    return SelfConsistency(MATH, k=k, **options)


@register("math.tot", kind="latex")
def tot(breadth: int = 3, depth: int = 4, proposals: int = 3, **options):
    """Tree of thought (BFS) over short derivation steps."""
    return TreeOfThought(MATH, breadth=breadth, depth=depth, proposals=proposals, **options)
