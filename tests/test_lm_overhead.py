"""What keeps the client's per-call CPU low stays correct: reused loops and clients, the request body
sent without openai's transform, and the per-signature caches. (The figures themselves are printed by
evals/client_overhead.py; no test times anything.)"""

import asyncio
import gc
import threading

import dspy
import httpx2
import openai
import pytest

import reasonflow
from reasonflow.adapter import response_format
from reasonflow.lm import VLLMLM, chat_request
from reasonflow.search import base
from reasonflow.search.base import run_sync
from tests.fakeserver import FakeServer, completion

ANSWER = completion('{"reasoning": "4 + 4", "answer": "8"}')
MESSAGES = [{"role": "user", "content": "hi"}]


def _clients_built(monkeypatch) -> list:
    built = []
    real = openai.AsyncOpenAI

    def counting(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(openai, "AsyncOpenAI", counting)
    return built


def test_sync_program_calls_reuse_one_loop_and_one_client(monkeypatch):
    built = _clients_built(monkeypatch)
    with FakeServer([ANSWER]) as server:
        lm = VLLMLM(server.base_url, "fake")
        program = reasonflow.program("gsm8k.cot")
        with dspy.context(lm=lm, adapter=reasonflow.StructuredAdapter()):
            answers = [program(question="What is 4 + 4?").answer for _ in range(3)]
    assert answers == [8.0, 8.0, 8.0]
    assert len(built) == 1


def test_sync_calls_carry_the_callers_context():
    with FakeServer([ANSWER]) as server:
        lm = VLLMLM(server.base_url, "fake")
        with dspy.context(lm=lm, adapter=reasonflow.StructuredAdapter()), reasonflow.track_usage() as usage:
            reasonflow.program("gsm8k.cot")(question="What is 4 + 4?")
            reasonflow.program("gsm8k.cot")(question="What is 4 + 4?")
    assert usage.calls == 2


def test_a_sync_call_that_raises_closes_its_loop_and_the_next_call_works():
    async def fail():
        raise ValueError("boom")

    async def running_loop():
        return asyncio.get_running_loop()

    first = run_sync(running_loop())
    assert run_sync(running_loop()) is first  # reused while calls succeed
    with pytest.raises(ValueError):
        run_sync(fail())
    assert first.is_closed() and run_sync(running_loop()) is not first


def test_an_ended_threads_loop_is_closed_when_another_thread_starts_one():
    async def nothing():
        return None

    def in_thread():
        run_sync(nothing())
        loops.append(base._runners[threading.current_thread()].get_loop())

    loops = []
    for _ in range(2):
        worker = threading.Thread(target=in_thread)
        worker.start()
        worker.join()
    assert loops[0].is_closed() and not loops[1].is_closed()


def test_an_async_client_is_closed_with_its_loop_and_keeps_no_loop_alive():
    with FakeServer([ANSWER]) as server:
        lm = VLLMLM(server.base_url, "fake")
        for _ in range(3):
            asyncio.run(lm.aforward(messages=MESSAGES))
    gc.collect()
    assert len(lm._aclients) == 0


def test_the_body_sent_is_the_one_create_would_send():
    with FakeServer([ANSWER]) as server:
        lm = VLLMLM(server.base_url, "fake", temperature=0.7, max_tokens=50, seed=3)
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True}}
        lm.forward(messages=MESSAGES, n=2, response_format=fmt, top_k=5)
        body, extra = lm._body(None, MESSAGES, {"n": 2, "response_format": fmt, "top_k": 5})
        openai.OpenAI(base_url=server.base_url, api_key="EMPTY").chat.completions.create(**body, extra_body=extra)
    ours, sdk = server.bodies
    assert ours == sdk and ours["top_k"] == 5


def test_the_api_key_goes_as_a_bearer_token():
    seen = []

    def handler(request):
        seen.append(request.headers.get("authorization"))
        return httpx2.Response(200, json=ANSWER)

    client = openai.OpenAI(base_url="http://test/v1", api_key="sekret",
                           http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    chat_request(client, {"model": "fake", "messages": MESSAGES}, {})
    assert seen == ["Bearer sekret"]


def test_the_response_format_is_built_once_per_signature_class_and_does_not_keep_it_alive():
    def make():
        class Solve(dspy.Signature):
            question: str = dspy.InputField()
            answer: int = dspy.OutputField()
        return Solve

    first, second = make(), make()
    assert response_format(first) is response_format(first)
    assert response_format(first) is not response_format(second)
    assert response_format(first) == response_format(second)
    from reasonflow import adapter

    size = len(adapter._response_formats)
    del first
    gc.collect()
    assert len(adapter._response_formats) == size - 1


def test_the_cached_system_message_follows_the_signatures_instructions():
    class Solve(dspy.Signature):
        """Solve it."""
        question: str = dspy.InputField()
        answer: str = dspy.OutputField()

    adapter = reasonflow.StructuredAdapter()
    other = Solve.with_instructions("Answer in French.")
    assert adapter.format_system_message(Solve) == dspy.JSONAdapter().format_system_message(Solve)
    assert "French" in adapter.format_system_message(other) and "French" not in adapter.format_system_message(Solve)
