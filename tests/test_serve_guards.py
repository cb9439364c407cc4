"""The server's guards over real HTTP: Bearer auth (constant-time), body limit, 422 before any LM call,
the concurrency limit's fast 503, disconnect cancellation of upstream requests, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from reasonflow import VLLMLM
from reasonflow.config import LMConfig
from reasonflow.serve import ServeLimits, create_app
from reasonflow.serve.testing import free_port, serving
from reasonflow.testing import ScriptedLM
from tests import serveproc

KEY = "s3cret-key"


def answer(call):
    return {"reasoning": "r", "answer": 7}


# --- auth ------------------------------------------------------------------------------------------

ROUTES = [("GET", "/readyz", None), ("GET", "/v1/models", None), ("GET", f"/v1/traces/{'a' * 32}", None),
          ("POST", "/v1/solve", {"question": "q"}), ("POST", "/v1/solve/stream", {"question": "q"}),
          ("POST", "/v1/chat/completions", {"model": "gsm8k.cot", "messages": [{"role": "user", "content": "q"}]}),
          ("POST", "/v1/completions", {"model": "gsm8k.cot", "prompt": "q"}), ("GET", "/metrics", None),
          ("GET", "/openapi.json", None), ("GET", "/docs", None)]


def test_every_route_but_healthz_needs_the_bearer_token():
    lm = ScriptedLM(answer)
    with serving(create_app(["gsm8k.cot"], lm=lm, api_key=KEY)) as url:
        for method, path, body in ROUTES:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
                            {"Authorization": KEY}, {"Authorization": f"Bearer {KEY}x"}):
                r = httpx.request(method, url + path, json=body, headers=headers)
                assert r.status_code == 401, (path, headers, r.status_code)
                assert r.headers["www-authenticate"] == "Bearer"
                assert r.json()["error"]["type"] == "authentication_error"
        assert lm.calls == []
        good = {"Authorization": f"Bearer {KEY}"}
        codes = {path: httpx.request(m, url + path, json=b, headers=good).status_code for m, path, b in ROUTES}
        assert httpx.get(f"{url}/healthz").status_code == 200  # open without a token
    assert codes.pop(f"/v1/traces/{'a' * 32}") == 404
    assert set(codes.values()) == {200}, codes


def test_without_an_api_key_no_token_is_needed():
    with serving(create_app(["gsm8k.cot"], lm=ScriptedLM(answer))) as url:
        assert httpx.post(f"{url}/v1/solve", json={"question": "q"}).status_code == 200


def test_the_key_is_compared_in_constant_time(monkeypatch):
    import reasonflow.serve.middleware as middleware

    seen = []

    def spy(a, b):
        seen.append((len(a), len(b)))
        return __import__("hmac").compare_digest(a, b)

    monkeypatch.setattr(middleware, "compare_digest", spy)
    with serving(create_app(["gsm8k.cot"], lm=ScriptedLM(answer), api_key=KEY)) as url:
        httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer x"})
        httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer " + "y" * 500})
        httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        httpx.get(f"{url}/v1/models")
    # every check went through hmac.compare_digest, on fixed-length digests (no length leak)
    assert seen == [(32, 32)] * 4


# --- limits and validation -------------------------------------------------------------------------

def test_body_over_1mb_gets_413_before_parsing():
    lm = ScriptedLM(answer)
    with serving(create_app(["gsm8k.cot"], lm=lm)) as url:
        big = b'{"question": "' + b"x" * 1_000_001 + b'"}'
        r = httpx.post(f"{url}/v1/solve", content=big, headers={"content-type": "application/json"})
        chunked = httpx.post(f"{url}/v1/solve", content=iter([big[:600_000], big[600_000:]]),
                             headers={"content-type": "application/json"})
        small_chunked = httpx.post(f"{url}/v1/solve", content=iter([b'{"question":', b' "q"}']),
                                   headers={"content-type": "application/json"})
        just_under = httpx.post(f"{url}/v1/solve", json={"question": "x" * 990_000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert chunked.status_code == 413
    assert small_chunked.status_code == 200
    assert just_under.status_code == 422  # under the body limit, over the question limit
    assert len(lm.calls) == 1


BAD_SOLVES = [
    {"question": "q", "program": "gsm8k.nope"},
    {"question": "q", "program": "gsm8k.sc@4", "options": {"k": 0}},
    {"question": "q", "program": "gsm8k.sc@4", "options": {"k": 100_000}},
    {"question": "q", "program": "gsm8k.sc@4", "options": {"k": "8"}},
    {"question": "q", "program": "gsm8k.sc@4", "options": {"k": 2.5}},
    {"question": "q", "options": {"max_tokens": 0}},
    {"question": "q", "options": {"max_tokens": 10_000_000}},
    {"question": "q", "options": {"temperature": 5}},
    {"question": "q", "options": {"k": 4}},  # gsm8k.cot takes no k
    {"question": "q", "options": {"nonsense": 1}},
    {"question": "q", "options": {"budget": {"deadline_s": -1}}},
    {"question": "q", "options": {"budget": {"max_nodes": 10**9}}},
    {"question": "q", "program": "gsm8k.tot", "options": {"evaluator": "oracle"}},
    {"question": ""},
    {"question": "   "},
    {"program": "gsm8k.cot"},
    {"question": "q", "unexpected": True},
    {"question": ["not", "a", "string"]},
]
BAD_CHATS = [  # OpenAI's codes on the OpenAI routes: 404 for an unknown model, 400 for the rest
    {"model": "gsm8k.nope", "messages": [{"role": "user", "content": "q"}]},
    {"model": "gsm8k.cot", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]},
    {"model": "gsm8k.cot", "messages": [{"role": "user", "content": "q"}], "n": 0},
    {"model": "gsm8k.cot", "messages": [{"role": "user", "content": "q"}], "n": 10_000},
    {"model": "gsm8k.cot", "messages": [{"role": "user", "content": "q"}], "max_tokens": -5},
    {"model": "gsm8k.cot", "messages": [{"role": "user", "content": "q"}], "max_completion_tokens": 10**8},
    {"model": "gsm8k.cot", "messages": []},
    {"model": "gsm8k.cot", "messages": [{"role": "user", "content": "q"}], "options": {"k": 3}},
]


BAD_COMPLETIONS = [
    {"model": "gsm8k.nope", "prompt": "q"},
    {"model": "gsm8k.cot", "prompt": []},
    {"model": "gsm8k.cot", "prompt": ["a", "b"]},
    {"model": "gsm8k.cot", "prompt": "q", "n": 0},
    {"model": "gsm8k.cot", "prompt": "q", "temperature": 9},
    {"model": "gsm8k.cot", "prompt": "q", "stream": True},
]


@pytest.mark.parametrize("path,body,status", [("/v1/solve", b, 422) for b in BAD_SOLVES] +
                         [("/v1/solve/stream", BAD_SOLVES[1], 422)] +
                         [("/v1/chat/completions", b, 404 if b["model"] == "gsm8k.nope" else 400) for b in BAD_CHATS] +
                         [("/v1/completions", b, 404 if b["model"] == "gsm8k.nope" else 400) for b in BAD_COMPLETIONS])
def test_bad_parameters_are_refused_before_any_lm_call(path, body, status):
    """reasonflow's own routes answer 422; the OpenAI routes answer as OpenAI does (404, 400)."""
    lm = ScriptedLM(answer)
    with serving(create_app(["gsm8k.cot", "gsm8k.sc@4", "gsm8k.tot"], lm=lm)) as url:
        r = httpx.post(url + path, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and set(error) >= {"message", "type", "param", "code"}
    assert lm.calls == []


def test_past_the_concurrency_limit_the_server_answers_a_fast_503():
    lm = ScriptedLM(answer, delay_s=1.5)
    with serving(create_app(["gsm8k.cot"], lm=lm, limits=ServeLimits(max_concurrency=2))) as url:
        with ThreadPoolExecutor(2) as pool:
            slow = [pool.submit(httpx.post, f"{url}/v1/solve", json={"question": f"q{i}"}, timeout=30)
                    for i in range(2)]
            while httpx.get(f"{url}/healthz").json()["in_flight"] < 2:
                time.sleep(0.02)
            started = time.perf_counter()
            busy = httpx.post(f"{url}/v1/solve", json={"question": "one too many"})
            busy_s = time.perf_counter() - started
            chat_busy = httpx.post(f"{url}/v1/chat/completions",
                                   json={"model": "gsm8k.cot", "messages": [{"role": "user", "content": "q"}]})
            models = httpx.get(f"{url}/v1/models")  # not a solving route: never gated
            assert [f.result().status_code for f in slow] == [200, 200]
        after = httpx.post(f"{url}/v1/solve", json={"question": "later"}, timeout=30)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1" and busy_s < 0.5
    assert chat_busy.status_code == 503 and models.status_code == 200
    assert after.status_code == 200
    assert [c.inputs["question"] for c in lm.calls if c.inputs["question"] == "one too many"] == []


# --- disconnect cancellation -----------------------------------------------------------------------

class HangingEngine:
    """An OpenAI-style endpoint that reads each request and never answers; it records when the
    client closes the connection (which is what cancelling an in-flight ``openai`` request does)."""

    def __init__(self):
        self.port = free_port()
        self.received = threading.Event()
        self.closed = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def handle(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        self.received.set()
        while await reader.read(1024):
            pass
        self.closed.set()
        writer.close()

    def __enter__(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(asyncio.start_server(self.handle, "127.0.0.1", self.port), self.loop).result()
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)

    @property
    def lm(self) -> VLLMLM:
        return VLLMLM(f"http://127.0.0.1:{self.port}/v1", "hang", config=LMConfig(timeout_s=60, max_retries=0))


def _gone_within(event: threading.Event, seconds: float) -> bool:
    return event.wait(seconds)


@pytest.mark.parametrize("path,body", [
    ("/v1/solve", {"question": "q"}),
    ("/v1/chat/completions", {"model": "gsm8k.cot", "messages": [{"role": "user", "content": "q"}]}),
])
def test_client_disconnect_cancels_the_upstream_lm_request(path, body):
    with HangingEngine() as engine, serving(create_app(["gsm8k.cot"], lm=engine.lm)) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + path, json=body, timeout=httpx.Timeout(30, read=1.0))
        assert engine.received.is_set()
        assert _gone_within(engine.closed, 5.0), "the upstream request was not cancelled"
        deadline = time.monotonic() + 5
        while httpx.get(f"{url}/healthz").json()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"{url}/healthz").json()["in_flight"] == 0


@pytest.mark.parametrize("path,body", [
    ("/v1/solve/stream", {"question": "q"}),
    ("/v1/chat/completions", {"model": "gsm8k.cot", "stream": True, "messages": [{"role": "user", "content": "q"}]}),
])
def test_closing_a_stream_cancels_the_upstream_lm_request(path, body):
    with HangingEngine() as engine, serving(create_app(["gsm8k.cot"], lm=engine.lm)) as url:
        with httpx.stream("POST", url + path, json=body, timeout=30) as r:
            assert r.status_code == 200
            assert engine.received.wait(10)
            next(r.iter_lines())  # the stream is open (first event / role chunk), then the client leaves
        assert _gone_within(engine.closed, 5.0), "the upstream request was not cancelled"


# --- graceful shutdown -----------------------------------------------------------------------------

SERVER = """
import sys
from reasonflow.serve.cli import serve
from reasonflow.testing import ScriptedLM
lm = ScriptedLM(lambda call: {"reasoning": "slow", "answer": 7}, delay_s=2.0)
serve(["gsm8k.cot"], lm=lm, port=int(sys.argv[1]), log_level="warning")
"""


def test_sigterm_lets_in_flight_requests_finish():
    port = free_port()
    proc = serveproc.start(["-c", SERVER, str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        serveproc.wait_ready(proc, url, timeout_s=60)
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, f"{url}/v1/solve", json={"question": "q"}, timeout=30)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(httpx.TransportError):  # no new connections once shutting down
                httpx.get(f"{url}/healthz", timeout=1)
            result = pending.result()
        assert result.status_code == 200 and result.json()["answer"] == 7
        # uvicorn re-raises the signal once it has shut down, so the exit status says "terminated"
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        assert "Traceback" not in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
