"""Declare your own task and search it with tree of thought, then look at the search.

    python examples/custom_program.py [--base-url URL]

A ``Task`` is signatures plus optional pure hooks; any strategy runs over it. Here: a tiny "reach the
target number" puzzle with a programmatic step validator and value, so the LM only proposes moves.
"""

from __future__ import annotations

import argparse
import re

import dspy

import reasonflow
from reasonflow import Task, TreeOfThought

TARGET = 20


class Propose(dspy.Signature):
    """Starting from 1, reach the target number. Write one move: "+N" or "*N" with N from 2 to 5."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField()
    next_step: str = dspy.OutputField(max_chars=8)


def total(steps):
    value = 1
    for step in steps:
        match = re.fullmatch(r"\s*([+*])\s*([2-5])\s*", step)
        value = value + int(match[2]) if match[1] == "+" else value * int(match[2])
    return value


task = Task(
    "reach",
    propose=Propose,
    validate_step=lambda q, steps, step: re.fullmatch(r"\s*[+*]\s*[2-5]\s*", step) is not None,
    value_fn=lambda q, steps: max(0.0, 1 - abs(TARGET - total(steps)) / TARGET),
    is_terminal=lambda q, steps: total(steps) >= TARGET,
    final_answer=lambda q, steps: str(total(steps)),
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url")
    args = parser.parse_args()
    reasonflow.configure(args.base_url)
    search = TreeOfThought(task, breadth=3, depth=5, proposals=4, temperature=1.0)
    pred = search(question=f"Reach {TARGET}.")
    print("answer:", pred.answer, "| budget exhausted:", pred.budget_exhausted)
    print(pred.trace.summary())
    print("viewer:", pred.trace.to_html("reach-trace.html"))
