"""A real ``reasonflow serve`` process (the CLI, a subprocess, real HTTP) over an OpenAI-compatible stub
engine (tests/fakeserver.py), used the way clients use it: the official ``openai`` client, Prometheus's
text format, and ``reasonflow.remote`` inside a user's own ``dspy.Module``."""

from __future__ import annotations

import asyncio
import json

import dspy
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

import reasonflow
from reasonflow.errors import LMRequestError, LMTimeoutError
from reasonflow.serve.config import DEFAULT_SERVE_PORT
from reasonflow.serve.testing import free_port
from tests import serveproc
from tests.fakeserver import FakeServer, completion

KEY = "sk-process-key"
START_TIMEOUT_S = 90


def engine_reply(body: dict) -> dict:
    """What the stub engine answers: n choices of a bounded-JSON CoT answer."""
    return completion(*[json.dumps({"reasoning": "48/2=24, 48+24=72", "answer": 72})] * body.get("n", 1))


@pytest.fixture(scope="module")
def engine():
    with FakeServer([engine_reply]) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(engine):
    port = free_port()
    proc = serveproc.serve("gsm8k.cot", "gsm8k.sc@4", "--base-url", engine.base_url, "--port", str(port),
                           "--log-level", "warning", REASONFLOW_SERVE_API_KEY=KEY)
    url = f"http://127.0.0.1:{port}"
    try:
        serveproc.wait_ready(proc, url, START_TIMEOUT_S)
        yield url
    finally:
        serveproc.stop(proc)


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=60)


def test_the_default_port_is_off_vllms_8000():
    from reasonflow.cli import build_parser

    assert DEFAULT_SERVE_PORT == 8100
    assert build_parser().parse_args(["serve", "gsm8k.cot"]).port == 8100


def test_openai_client_chat_and_completions_against_the_process(client, engine):
    assert [m.id for m in client.models.list().data] == ["gsm8k.cot", "gsm8k.sc@4"]
    before = len(engine.bodies)
    chat = client.chat.completions.create(model="gsm8k.sc@4", messages=[{"role": "user", "content": "Q?"}],
                                          temperature=0.7)
    choice = chat.choices[0]
    assert choice.message.content == "72" and choice.finish_reason == "stop"
    assert choice.message.reasoning == choice.message.reasoning_content == "48/2=24, 48+24=72"
    assert [b["n"] for b in engine.bodies[before:]] == [4]  # SC@4: one n=4 request to the engine
    text = client.completions.create(model="gsm8k.cot", prompt="Q?")
    assert text.choices[0].text == "72" and text.object == "text_completion"


def test_openai_client_errors_against_the_process(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="llama", messages=[{"role": "user", "content": "Q?"}])
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gsm8k.cot", messages=[{"role": "system", "content": "be nice"},
                                                                     {"role": "user", "content": "Q?"}])
    assert info.value.code == "unsupported_messages"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gsm8k.cot", messages=[{"role": "user", "content": "Q?"}], n=99)


def test_metrics_of_the_process_parse_as_prometheus_text(client, server):
    client.chat.completions.create(model="gsm8k.cot", messages=[{"role": "user", "content": "Q?"}])
    reply = httpx.get(f"{server}/metrics", headers={"Authorization": f"Bearer {KEY}"})
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    assert {"reasonflow_requests", "reasonflow_request_duration_seconds", "reasonflow_tokens",
            "reasonflow_requests_in_flight", "reasonflow_lm_calls"} <= set(families)
    answered = [s for s in families["reasonflow_requests"].samples
                if s.name == "reasonflow_requests_total" and s.labels == {"program": "gsm8k.cot", "outcome": "answer"}]
    assert answered and answered[0].value >= 1


class AnswerAndCheck(dspy.Module):
    """A user's own program: a served SC solve, then a plain-Python check on its answer."""

    def __init__(self, url: str):
        super().__init__()
        self.solve = reasonflow.remote(url, "gsm8k.sc@4", api_key=KEY, k=2, temperature=0.9)

    def forward(self, question: str):
        pred = self.solve(question=question)
        return dspy.Prediction(answer=pred.answer, even=pred.answer % 2 == 0, reasoning=pred.reasoning,
                               usage=pred.usage, trace_id=pred.trace_id)

    async def aforward(self, question: str):
        pred = await self.solve.acall(question=question)
        return dspy.Prediction(answer=pred.answer, trace_id=pred.trace_id)


def test_remote_inside_a_users_module_returns_answer_reasoning_usage_and_trace_id(server, engine):
    program = AnswerAndCheck(server)
    before = len(engine.bodies)
    pred = program(question="Natalia sold 48 clips in April and half as many in May. How many in all?")
    assert pred.answer == 72 and pred.even is True
    assert pred.reasoning  # the vote's reasoning, as the server reports it
    assert pred.usage["calls"] == 1 and pred.usage["completion_tokens"] > 0
    assert [b["n"] for b in engine.bodies[before:]] == [2]  # k=2 reached the program: one n=2 request
    trace = httpx.get(f"{server}/v1/traces/{pred.trace_id}", headers={"Authorization": f"Bearer {KEY}"})
    assert trace.status_code == 200 and trace.json()["graph"]["question"].startswith("Natalia")
    again = asyncio.run(program.acall(question="Q?"))
    assert again.answer == 72 and again.trace_id != pred.trace_id
    assert reasonflow.remote(f"{server}/v1", api_key=KEY)(question="Q?").program == "gsm8k.cot"  # the default


def test_remote_failures_are_typed(server):
    with pytest.raises(LMRequestError) as info:
        reasonflow.remote(server, "gsm8k.cot", api_key="wrong")(question="Q?")
    assert info.value.status_code == 401
    with pytest.raises(LMRequestError, match="unknown program") as info:
        reasonflow.remote(server, "gsm8k.nope", api_key=KEY)(question="Q?")
    assert info.value.status_code == 422
    with pytest.raises(LMRequestError, match="does not take"):
        reasonflow.remote(server, "gsm8k.cot", api_key=KEY, k=3)(question="Q?")
    with pytest.raises(LMTimeoutError, match="could not reach"):
        reasonflow.remote(f"http://127.0.0.1:{free_port()}", timeout_s=2)(question="Q?")
