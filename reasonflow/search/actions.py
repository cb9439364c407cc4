"""Action spaces: guided decoding that makes every proposal a legal step, and the baseline policies.

``step_format(task, signature, question, steps)`` is the ``response_format`` of one propose request:
the signature's bounded JSON schema (``adapter.bounded_schema``) with the step field narrowed to the
state's legal steps (an ``enum`` from ``Task.actions``) or to a regex (``pattern`` from
``Task.step_pattern``). vLLM enforces it, so a model can choose badly but cannot write an illegal step.
It is still one ``n=proposals`` request per state, through DSPy and ``StructuredAdapter``.

``baseline_proposals`` and ``baseline_value`` are the policies that bracket a model: ``random``
(uniform over the legal steps, uniform random values) and ``exact`` (only steps that keep the answer
reachable, exact values). Both are seeded per state, so a baseline run is the same whatever order
states are expanded in, and neither makes an LM call.

Not guaranteed: a regex bounds the form of a step, not its truth; ``exact`` is only as exact as the
task's ``exact_value``.
"""

from __future__ import annotations

import random

import dspy

from reasonflow.adapter import bounded_schema
from reasonflow.errors import ConfigError
from reasonflow.search.task import Task

POLICIES = ("lm", "random", "exact")


def step_field(signature: type[dspy.Signature]) -> str:
    """The output field that holds the step: ``next_step`` if present, else the only output."""
    outputs = list(signature.output_fields)
    if "next_step" in outputs:
        return "next_step"
    if len(outputs) != 1:
        raise ConfigError(f"{signature.__name__} needs a next_step output field for an action space")
    return outputs[0]


def step_format(task: Task, signature: type[dspy.Signature], question: str, steps: list[str]) -> dict | None:
    """The per-state ``response_format`` of a propose request, or None when the task has no action space."""
    if task.actions is None and task.step_pattern is None:
        return None
    schema = bounded_schema(signature)  # a fresh dict on every call: ours to narrow
    prop = schema["properties"][step_field(signature)]
    prop.pop("maxLength", None)  # xgrammar refuses maxLength next to a pattern; an enum bounds itself
    if task.actions is not None:
        prop["enum"] = list(task.actions(question, steps)) or [""]
    else:
        prop["pattern"] = task.step_pattern(question, steps)
    return {"type": "json_schema", "json_schema": {"name": signature.__name__, "schema": schema, "strict": True}}


def check_policy(task: Task, policy: str) -> None:
    if policy not in POLICIES:
        raise ConfigError(f"policy must be one of {POLICIES}, got {policy!r}")
    if policy != "lm" and task.actions is None:
        raise ConfigError(f"policy={policy!r} needs a task with an action space (Task.actions); {task.name} has none")
    if policy == "exact" and task.exact_value is None:
        raise ConfigError(f"policy='exact' needs Task.exact_value; {task.name} has none")


def _rng(seed: int, question: str, key: str, what: str) -> random.Random:
    return random.Random(f"{seed}|{what}|{question}|{key}")


def baseline_proposals(task: Task, policy: str, question: str, steps: list[str], key: str, n: int,
                       seed: int) -> list[str]:
    """``n`` steps drawn with replacement, as ``n`` samples of a model would be: uniform over the
    legal steps (``random``), or over those that keep the answer reachable (``exact``; all legal
    steps when none does)."""
    legal = list(task.actions(question, steps))
    if policy == "exact":
        legal = [s for s in legal if task.exact_value(question, steps + [s]) > 0] or legal
    if not legal:
        return []
    rng = _rng(seed, question, key, "propose")
    return [rng.choice(legal) for _ in range(n)]


def baseline_value(task: Task, policy: str, question: str, steps: list[str], key: str, seed: int) -> float:
    """A uniform random value (``random``) or the exact one (``exact``)."""
    if policy == "exact":
        return float(task.exact_value(question, steps))
    return _rng(seed, question, key, "value").random()
