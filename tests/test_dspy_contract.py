"""How reasonflow's LMs sit on DSPy's LM contract (reasonflow.lm.OneRequestPerCall): one HTTP request for
n samples, DSPy's own history and usage, no deprecation notice for reasonflow's classes and none hidden
for a user's own, and structured outputs from DSPy's own schema."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import dspy
import pytest

import reasonflow
from reasonflow import StructuredAdapter, VLLMLM
from reasonflow.adapter import bounded_schema, response_format
from reasonflow.config import LMConfig
from reasonflow.testing import ScriptedLM
from tests.fakeserver import FakeServer, completion

REPO = Path(__file__).resolve().parents[1]
GOOD = json.dumps({"reasoning": "48/2=24, 48+24=72", "answer": 72})
SC = {"n": 8, "temperature": 0.8}


def test_n8_is_one_http_request_sync_and_async_with_one_dspy_history_entry():
    program = dspy.ChainOfThought("question -> answer: float")
    with FakeServer([completion(*[GOOD] * 8)]) as srv:
        lm = VLLMLM(srv.base_url, "fake", config=LMConfig(timeout_s=5, max_retries=0))
        with reasonflow.session(lm), dspy.track_usage() as usage:
            sync = program(question="q", config=SC)
            asynchronous = asyncio.run(program.acall(question="q", config=SC))
    assert [b["n"] for b in srv.bodies] == [8, 8]  # two calls, two requests, not sixteen
    assert len(sync.completions.answer) == len(asynchronous.completions.answer) == 8
    assert len(lm.history) == 2 and len(lm.history[0]["outputs"]) == 8
    # DSPy's own usage tracker saw both calls (the fake server reports 11 prompt tokens per request)
    assert usage.get_total_tokens()[lm.model]["prompt_tokens"] == 22


def test_reasonflow_lms_raise_no_dspy_deprecation_notice():
    program = dspy.ChainOfThought("question -> answer: float")
    scripted = ScriptedLM(lambda call: {"reasoning": "r", "answer": 3})
    with warnings.catch_warnings(record=True) as caught, FakeServer([completion(*[GOOD] * 4)]) as srv:
        warnings.simplefilter("always")
        for lm in (scripted, VLLMLM(srv.base_url, "fake")):
            with reasonflow.session(lm):
                program(question="q", config={"n": 4, "temperature": 0.7})
                asyncio.run(program.acall(question="q", config={"n": 4, "temperature": 0.7}))
    assert [c.n for c in scripted.calls] == [4, 4] and len(srv.bodies) == 2
    notices = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)
               and "custom LMs" in str(w.message)]
    assert notices == []


USER_LM = """
import warnings
from types import SimpleNamespace
import reasonflow, dspy

class MyLM(dspy.BaseLM):
    def forward(self, prompt=None, messages=None, **kwargs):
        choice = SimpleNamespace(index=0, finish_reason="stop", message=SimpleNamespace(content="hi"))
        return SimpleNamespace(choices=[choice], usage={}, model="mine")

print(MyLM("openai/mine")("hello"))
"""


def test_a_users_own_forward_lm_still_gets_dspys_notice_after_importing_reasonflow():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-W", "always::DeprecationWarning", "-c", USER_LM], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "['hi']" in out.stdout
    assert "Implementing custom LMs through BaseLM.forward() or aforward() is deprecated" in out.stderr


def test_dspys_own_json_adapter_sends_structured_outputs_to_vllmlm():
    """VLLMLM declares response_format and JSON-schema support, so plain dspy.JSONAdapter uses them."""
    with FakeServer([completion(GOOD)]) as srv:
        lm = VLLMLM(srv.base_url, "fake")
        with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
            assert dspy.ChainOfThought("question -> answer: float")(question="q").answer == 72
    fmt = srv.bodies[0]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["required"] == ["reasoning", "answer"]


def test_the_bounded_schema_is_dspys_strict_schema_with_bounds():
    sig = dspy.ChainOfThought("question -> answer: float").predict.signature
    schema = bounded_schema(sig)
    assert schema["additionalProperties"] is False and schema["required"] == ["reasoning", "answer"]
    assert schema["properties"]["reasoning"]["maxLength"] > 0
    assert schema["properties"]["answer"]["type"] == "string" and "pattern" in schema["properties"]["answer"]
    # building it again gives an equal, separate dict (callers narrow it in place)
    again = bounded_schema(sig)
    assert again == schema and again is not schema


def test_an_open_mapping_field_falls_back_to_json_object_as_dspy_does():
    sig = dspy.Signature("question -> facts: dict[str, int]")
    assert response_format(sig) == {"type": "json_object"}
    with pytest.raises(TypeError, match="no JSON schema"):
        bounded_schema(sig)


def test_structured_adapter_sends_the_bounded_schema_on_the_scripted_lm_too():
    lm = ScriptedLM(lambda call: {"reasoning": "r", "answer": 5})
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        dspy.ChainOfThought("question -> answer: float")(question="q")
    fmt = lm.calls[0].kwargs["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True


class CountingEngine:
    """A DSPy 3.4 canonical engine (``complete(Request) -> Response``) that counts its calls."""

    def __init__(self):
        self.requests = []

    def complete(self, request):
        from dspy.lm15 import Message, Response, TextPart, Usage

        self.requests.append(request)
        return Response(id=None, model="counting", message=Message.assistant([TextPart("hi")]), finish_reason="stop",
                        usage=Usage(input_tokens=1, output_tokens=1, total_tokens=2))

    def stream(self, request):
        raise NotImplementedError

    def close(self):
        pass


def test_canary_dspys_supported_engine_contract_still_fans_n_out_into_n_calls():
    """Why OneRequestPerCall exists (and dspy<3.5 with it): DSPy's supported custom-engine contract gets
    one candidate per ``complete()``, so n=8 would be eight sequential requests. When this fails, DSPy
    can hand an engine n in one call: move VLLMLM onto ``dspy.LM(engine=...)`` and lift the pin."""
    engine = CountingEngine()
    lm = dspy.LM("openai/counting", engine=engine, cache=False)
    outputs = lm("hello", n=8, temperature=0.8)
    assert len(outputs) == 8 and len(engine.requests) == 8
    assert all("n" not in (r.config.extensions or {}) for r in engine.requests)
