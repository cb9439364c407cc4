"""``Result``: one typed outcome for every program, strategy or plain DSPy module, raised or not."""

from __future__ import annotations

import math

import dspy

from reasonflow import NoAnswerError, ParseError, Result
from reasonflow.result import plain


def test_an_answer_is_usable_or_none_and_a_non_finite_one_says_why():
    assert Result(answer="18").answer == "18" and Result(answer="18").error is None
    blank = Result(answer="   ")
    assert blank.answer is None and blank.error is None  # no answer at all: nothing to explain
    nan = Result(answer=float("nan"))
    assert nan.answer is None and isinstance(nan.error, NoAnswerError) and "finite" in str(nan.error)


def test_a_plain_modules_prediction_gets_a_two_node_trace():
    result = Result.of(dspy.Prediction(answer=4, reasoning="2+2"), program="mine", question="2+2?", usage={"calls": 1})
    graph = result.trace.graph
    assert (result.answer, result.reasoning, len(graph), graph.number_of_edges()) == (4, "2+2", 2, 1)
    assert [d["status"] for _, d in graph.nodes(data=True)] == ["expanded", "answer"]


def test_a_raised_error_stays_an_exception_and_its_trace_says_what_happened():
    error = ParseError("not JSON", raw_text="{")
    result = Result.of(None, program="mine", question="q", usage={}, error=error)
    assert result.error is error and result.answer is None
    pruned = [d for _, d in result.trace.graph.nodes(data=True) if d["status"] == "pruned"]
    assert pruned[0]["text"].startswith("ParseError: not JSON")


def test_a_strategys_own_result_is_returned_as_is_and_its_prediction_keeps_the_old_fields():
    own = Result(answer="7", samples=("7", None), votes=(("7", 1),), sample_errors=(None, "SandboxTimeout: x"))
    pred = own.prediction()
    assert Result.of(pred, program="p", question="q", usage={}) is own
    assert (pred.votes, pred.samples, pred.errors, pred.failed) == ([["7", 1]], ["7", None], [None, "SandboxTimeout: x"], 1)


def test_plain_is_json_safe():
    assert plain({"a": (1, float("inf")), "b": math, 2: None}) == {"a": [1, "inf"], "b": str(math), "2": None}
