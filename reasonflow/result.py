"""``Result``: what one run of a program gave, as typed fields, for the bench, the server and users.

    pred = program(question="...")          # a dspy.Prediction, as DSPy's optimizers expect
    result = pred.result                    # the same run, typed: answer, samples, votes, error, budget
    result = Result.of(pred, program="x", question="...", usage={})   # any program's, even a plain DSPy module's

Every strategy returns ``result.prediction()``: the Prediction carries the fields by name (``pred.answer``,
``pred.votes``, ...) and the ``Result`` itself as ``pred.result``. ``error`` is an exception object, never
a string to split (``describe(error)`` is the display form). ``answer`` is always usable or None (blank
text becomes None; a non-finite number becomes None with a ``NoAnswerError``). ``Result.of`` also covers a program that left
no trace (a plain DSPy module) or raised: it builds the two-node trace (question, then the answer or the
error), so a row or a response always has one. ``plain`` is the one JSON-safe form of a value.

Not guaranteed: ``samples``/``votes`` are None for strategies that do not sample (CoT, the tree searches).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from typing import Any

import dspy

from reasonflow.checking.answers import present, unusable_reason, usable
from reasonflow.errors import NoAnswerError, describe
from reasonflow.trace import Trace


def plain(value: Any) -> Any:
    """A JSON-safe copy: dataclasses and dicts as dicts, tuples as lists, a non-finite float as its text
    (``"nan"``), anything else that is not a JSON scalar as its ``str``."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


@dataclass(frozen=True)
class Result:
    """One run's outcome. ``samples``/``votes``/``scores``/``sample_errors``/``programs`` are set by
    the strategies that have them (SC, PoT, BestOfN) and None otherwise."""

    answer: Any = None
    reasoning: str = ""
    error: BaseException | None = None  # why there is no answer (ParseError, NoAnswerError, a timeout ...)
    budget_exhausted: bool = False
    exhausted_by: str | None = None  # which bound ran out: max_nodes | max_depth | max_lm_calls | deadline
    samples: tuple | None = None  # each sample's answer, None where it was unusable
    votes: tuple[tuple[Any, int], ...] | None = None  # (answer, count) per cluster, in first-appearance order
    scores: tuple[float, ...] | None = None  # BestOfN: each sample's verifier score
    sample_errors: tuple[str | None, ...] | None = None  # PoT: each program's sandbox error, None where it ran
    programs: tuple[str, ...] | None = None  # PoT: the programs the model wrote
    selections: dict | None = None  # PoT@k: {rule: answer} for each selection rule over the same samples
    confidences: tuple[float | None, ...] | None = None  # PoT@k: each sample's sequence confidence
    usage: dict = field(default_factory=dict)
    trace: Trace | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.answer is not None and not usable(self.answer):  # blank: no answer; non-finite: an error
            if present(self.answer) and self.error is None:
                object.__setattr__(self, "error", NoAnswerError(f"no usable answer: {unusable_reason(self.answer)}"))
            object.__setattr__(self, "answer", None)

    @property
    def failed(self) -> int | None:
        """How many samples failed (PoT), or None."""
        return None if self.sample_errors is None else sum(e is not None for e in self.sample_errors)

    def prediction(self) -> dspy.Prediction:
        """The DSPy form: every field by name (lists, as before), plus ``result`` (this object)."""
        fields: dict[str, Any] = {"answer": self.answer, "reasoning": self.reasoning, "trace": self.trace,
                                  "usage": self.usage, "budget_exhausted": self.budget_exhausted, "result": self}
        if self.error is not None:
            fields["error"] = self.error
        if self.votes is not None:
            fields["votes"] = [[a, n] for a, n in self.votes]
        if self.selections is not None:
            fields["selections"] = dict(self.selections)
        for name in ("samples", "scores", "programs", "confidences"):
            if getattr(self, name) is not None:
                fields[name] = list(getattr(self, name))
        if self.sample_errors is not None:
            fields.update(errors=list(self.sample_errors), failed=self.failed)
        return dspy.Prediction(**fields)

    @classmethod
    def of(cls, pred: Any, *, program: str, question: str, usage: dict, error: BaseException | None = None,
           listener=None) -> "Result":
        """The typed result of one call: the strategy's own when it has one; else read off a plain
        prediction (or, with ``error``, the exception the call raised), with a two-node trace."""
        own = getattr(pred, "result", None)
        if error is None and isinstance(own, Result):
            return own
        answer = None if error is not None else getattr(pred, "answer", None)
        reasoning = "" if error is not None else str(getattr(pred, "reasoning", "") or "")
        result = cls(answer=answer, reasoning=reasoning, error=error, usage=usage,
                     budget_exhausted=error is None and bool(getattr(pred, "budget_exhausted", False)))
        trace = getattr(pred, "trace", None)
        if not isinstance(trace, Trace):
            trace = fallback_trace(program, question, result, usage, listener)
        return replace(result, trace=trace)


def fallback_trace(program: str, question: str, result: Result, usage: dict, listener=None) -> Trace:
    """Question -> answer (its reasoning as text), or question -> pruned error, for a program that left
    no trace of its own."""
    trace = Trace(program=program, strategy="module", question=question, listener=listener)
    root = trace.add_node(text=question, status="expanded")
    if result.answer is not None:
        node = trace.add_node(text=result.reasoning, parent=root, status="answer", answer=str(plain(result.answer)))
    else:
        note = describe(result.error) if result.error else "the program kept no trace and gave no answer"
        node = None
        trace.add_node(text=note, parent=root, status="pruned", action="error")
    trace.finish(answer=plain(result.answer), usage=usage, answer_node=node)
    return trace
