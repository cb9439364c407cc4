"""GSM8K programs: chain-of-thought, self-consistency and tree-of-thought over short steps.

A ToT step is one sentence or one equation; a state is terminal when its last step states the answer
("The answer is 18"), which is then read off programmatically.
"""

from __future__ import annotations

import re

import dspy

from reasonflow.checking import extract_number, numeric_equivalent
from reasonflow.registry import register
from reasonflow.search import Task
from reasonflow.strategies import BestOfN, ChainOfThought, ProgramOfThought, SelfConsistency, TreeOfThought


class SolveGSM8K(dspy.Signature):
    """Solve the grade-school math word problem. Reason briefly, step by step, with the arithmetic
    written out, then give the final answer as a single number."""

    question: str = dspy.InputField()
    answer: float = dspy.OutputField(desc="the final answer, a number")


class ProposeGSM8KStep(dspy.Signature):
    """Given a math word problem and the steps so far, write only the next step: one sentence or one
    equation. When the steps already give the result, write "The answer is N"."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField(desc="the steps so far, one per line (empty at the start)")
    next_step: str = dspy.OutputField(desc="one sentence or one equation", max_chars=160)


class AnswerGSM8K(dspy.Signature):
    """Given a math word problem and its worked steps, give the final answer as a single number."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField()
    answer: float = dspy.OutputField()


_STATES_ANSWER = re.compile(r"answer\s*(is|:|=)", re.I)


def _terminal(question: str, steps: list[str]) -> bool:
    return bool(steps) and bool(_STATES_ANSWER.search(steps[-1]))


def _final(question: str, steps: list[str]) -> str | None:
    return extract_number(steps[-1]) if _terminal(question, steps) else None


GSM8K = Task("gsm8k", solve=SolveGSM8K, propose=ProposeGSM8KStep, answer=AnswerGSM8K,
             equivalent=numeric_equivalent, is_terminal=_terminal, final_answer=_final)


@register("gsm8k.cot", kind="number")
def cot(**options):
    """Chain of thought: one reasoning path, answer as a number."""
    return ChainOfThought(GSM8K, **options)


@register("gsm8k.sc", kind="number")
def sc(k: int = 8, **options):
    """Self-consistency: k sampled chains in one request, majority vote on the number."""
    return SelfConsistency(GSM8K, k=k, **options)


@register("gsm8k.bon", kind="number")
def bon(n: int = 4, **options):
    """Best of n sampled chains, scored by an LM judge."""
    return BestOfN(GSM8K, n=n, **options)


@register("gsm8k.tot", kind="number")
def tot(breadth: int = 3, depth: int = 4, proposals: int = 3, **options):
    """Tree of thought (BFS): steps are sentences or equations, scored sure/likely/impossible."""
    return TreeOfThought(GSM8K, breadth=breadth, depth=depth, proposals=proposals, **options)


@register("gsm8k.pot", kind="number")
def pot(k: int = 1, **options):
    """Program of thought: k Python programs in one request, run in the sandbox, majority vote on their results."""
    return ProgramOfThought(GSM8K, k=k, **options)
