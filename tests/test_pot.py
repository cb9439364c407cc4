"""Offline behaviour of ProgramOfThought, driven by a scripted LM; programs really run in the sandbox."""

from __future__ import annotations

import asyncio
import time

import dspy
import pytest

from reasonflow import StructuredAdapter
from reasonflow.checking import numeric_equivalent
from reasonflow.errors import ConfigError, NoAnswerError
from reasonflow.registry import get_program
from reasonflow.search import Task
from reasonflow.strategies import STRATEGIES, ProgramOfThought
from reasonflow.strategies import pot as pot_module
from reasonflow.strategies.pot import strip_fences
from reasonflow.testing import ScriptedLM

NUMBERS = Task("t", equivalent=numeric_equivalent)


def run(program, lm, question="q"):
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        return program(question=question)


def programs_lm(codes: list[str]) -> ScriptedLM:
    return ScriptedLM(lambda call: [{"code": c} for c in codes][:call.n])


def test_k_programs_come_from_one_request_and_the_vote_counts_only_executed_answers():
    codes = [
        "answer = 7\nimport os",             # forbidden after setting answer: must not count
        "answer = 7\nboom = 1 / 0",          # raises after setting answer: must not count
        "answer = 7\nopen('notes.txt')",     # forbidden
        "answer = 6 * 7",
        "```python\nanswer = 40 + 2.0\n```",  # fenced: the fence is stripped
    ]
    lm = programs_lm(codes)
    pred = run(ProgramOfThought(NUMBERS, k=5), lm)
    assert len(lm.calls) == 1 and lm.calls[0].n == 5
    assert pred.answer == 42 and pred.votes == [[42, 2]]
    assert pred.samples == [None, None, None, 42, 42.0] and pred.failed == 3
    assert [e.split(":")[0] if e else None for e in pred.errors] == [
        "SandboxForbidden", "SandboxCodeError", "SandboxForbidden", None, None]
    assert pred.reasoning == "answer = 6 * 7"


def test_trace_has_one_node_per_program_with_its_execution_status():
    codes = ["answer = 3", "answer = 1 / 0", "answer = 3.0", "answer = 5", "x = 1"]
    pred = run(ProgramOfThought(NUMBERS, k=5), programs_lm(codes))
    g = pred.trace.graph
    root = g.nodes["n0"]
    assert root["status"] == "expanded" and root["calls"]
    kids = [g.nodes[n] for n in g.successors("n0")]
    assert [k["text"] for k in kids] == codes
    assert [k["status"] for k in kids] == ["answer", "pruned", "selected", "terminal", "pruned"]
    assert "ZeroDivisionError" in kids[1]["reason"] and "SandboxNoAnswer" in kids[4]["reason"]
    assert [str(k["answer"]) for k in kids] == ["3", "None", "3.0", "5", "None"]


def test_k1_is_one_sample_at_the_default_temperature_and_k_gt_1_samples_at_t():
    lm = programs_lm(["answer = 2 + 2"])
    pred = run(ProgramOfThought(NUMBERS), lm)
    assert pred.answer == 4 and lm.calls[0].n == 1 and lm.calls[0].kwargs["temperature"] == 0.0
    lm = programs_lm(["answer = 4"] * 3)
    run(ProgramOfThought(NUMBERS, k=3, temperature=0.9), lm)
    assert lm.calls[0].n == 3 and lm.calls[0].kwargs["temperature"] == 0.9


def test_programs_execute_concurrently(monkeypatch):
    starts = []

    async def fake_run(code, **limits):
        starts.append(time.monotonic())
        await asyncio.sleep(0.3)
        return type("R", (), {"answer": 1})()

    monkeypatch.setattr(pot_module, "arun_code", fake_run)
    pred = run(ProgramOfThought(NUMBERS, k=4), programs_lm(["answer = 1"] * 4))
    assert pred.answer == 1 and len(starts) == 4 and max(starts) - min(starts) < 0.15


def test_when_every_program_fails_the_answer_is_none_and_error_says_why():
    pred = run(ProgramOfThought(NUMBERS, k=2), programs_lm(["import socket", "x = 1"]))
    assert pred.answer is None and pred.failed == 2 and "2 of 2 failed" in str(pred.error)
    assert isinstance(pred.error, NoAnswerError) and pred.result.error is pred.error
    assert not pred.budget_exhausted


def test_a_custom_signature_replaces_the_default_prompt():
    class Solver(dspy.Signature):
        """Compute the result with Python; SPECIAL-INSTRUCTION."""

        question: str = dspy.InputField()
        code: str = dspy.OutputField()

    lm = programs_lm(["answer = 1"])
    run(ProgramOfThought(NUMBERS, signature=Solver), lm)
    assert "SPECIAL-INSTRUCTION" in lm.calls[0].system
    with pytest.raises(ConfigError, match="code"):
        ProgramOfThought(NUMBERS, signature=dspy.Signature("question -> answer"))


def test_bad_k_or_sandbox_limits_are_config_errors_at_construction():
    with pytest.raises(ConfigError, match="k must be"):
        ProgramOfThought(NUMBERS, k=0)
    with pytest.raises(ConfigError, match="timeout_s"):
        ProgramOfThought(NUMBERS, timeout_s=-1)


@pytest.mark.parametrize("text, code", [
    ("```python\nanswer = 1\n```", "answer = 1"),
    ("```\nx = 2\nanswer = x\n```\n", "x = 2\nanswer = x"),
    ("answer = 3", "answer = 3"),
])
def test_strip_fences_returns_the_code_inside_a_markdown_fence(text, code):
    assert strip_fences(text) == code


def test_pot_is_registered_and_at_n_sets_the_number_of_programs():
    assert STRATEGIES["pot"] is ProgramOfThought
    single, voted = get_program("gsm8k.pot"), get_program("gsm8k.pot@8")
    assert isinstance(single, ProgramOfThought) and single.k == 1
    assert isinstance(voted, ProgramOfThought) and voted.k == 8 and voted.task.name == "gsm8k"
