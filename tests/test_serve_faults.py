"""Issue #13 over real HTTP: what a model or an upstream can send never gives a 500 or a silent empty
answer (points 2, 3, 7 and the `choices: []` point), requests are bounded by default (4, 5), pot is
refused without a sandbox, and SC at temperature 0 is refused rather than resampled (10)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dspy
import httpx
import openai
import pytest

from reasonflow import StructuredAdapter, VLLMLM, sandbox
from reasonflow.config import LMConfig
from reasonflow.errors import ConfigError, UpstreamResponseError
from reasonflow.registry import get_program
from reasonflow.serve import ServeLimits, create_app
from reasonflow.serve.config import DEFAULT_REQUEST_DEADLINE_S
from reasonflow.serve.testing import serving
from reasonflow.testing import ScriptedLM
from tests.fakeserver import FakeServer, completion

CHAT = {"model": "gsm8k.cot", "messages": [{"role": "user", "content": "What is 6*7?"}]}


def post(url, path, body, **kw):
    return httpx.post(f"{url}{path}", json=body, timeout=kw.pop("timeout", 30), **kw)


class RawUpstream:
    """An OpenAI-compatible stub whose chat completions answer 200 with ``body`` bytes as they are."""

    def __init__(self, body: bytes):
        models = json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode()
        self.posts = 0
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(models)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                upstream.posts += 1
                self._send(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def vllm(base_url: str, **config) -> VLLMLM:
    return VLLMLM(base_url, "fake", config=LMConfig(**{"timeout_s": 5, "max_retries": 0, **config}))


# --- point 2: non-finite answers are unusable answers, never a 500 (or a 422 that blames the client) ----

NON_FINITE = {"nan-text": '{"reasoning": "r", "answer": "nan"}', "1e309": '{"reasoning": "r", "answer": 1e309}',
              "-inf-text": '{"reasoning": "r", "answer": "-inf"}'}


@pytest.mark.parametrize("program", ["gsm8k.cot", "gsm8k.sc@3"])
@pytest.mark.parametrize("raw", sorted(NON_FINITE))
def test_non_finite_answers_are_an_error_not_a_500(program, raw):
    lm = ScriptedLM(lambda call: [NON_FINITE[raw]] * call.n)
    with serving(create_app([program], lm=lm)) as url:
        solved = post(url, "/v1/solve", {"question": "q"})
        chat = post(url, "/v1/chat/completions", {**CHAT, "model": program})
    assert solved.status_code == 200, solved.text  # before: 500 IndexError (sc), 422 (cot)
    assert solved.json()["answer"] is None and "finite" in solved.json()["error"]
    assert chat.status_code == 502 and chat.json()["error"]["code"] == "no_answer", chat.text


def test_a_pot_program_whose_answer_is_nan_is_an_error_not_a_500():
    lm = ScriptedLM(lambda call: [{"code": "answer = float('nan')"}] * call.n)
    with serving(create_app(["gsm8k.pot@3"], lm=lm)) as url:
        solved = post(url, "/v1/solve", {"question": "q"})
    assert solved.status_code == 200, solved.text  # before: 500 IndexError
    body = solved.json()
    assert body["answer"] is None and "no program produced an answer" in body["error"]


def test_some_finite_samples_still_win_the_vote():
    lm = ScriptedLM(lambda call: ['{"reasoning": "r", "answer": "nan"}', '{"reasoning": "r", "answer": 7}',
                                  '{"reasoning": "r", "answer": 7}'])
    with serving(create_app(["gsm8k.sc@3"], lm=lm)) as url:
        body = post(url, "/v1/solve", {"question": "q"}).json()
    assert body["answer"] == 7 and "error" not in body
    statuses = sorted(n["status"] for n in body["trace"]["nodes"][1:])
    assert statuses == ["answer", "pruned", "selected"]  # the first winner carries the answer


# --- point 3: a chat completion without an answer says so ---------------------------------------------

FAILURES = {
    "garbage": lambda call: "this is not json at all",
    "truncated": lambda call: ({"reasoning": "r", "answer": 1}, "length"),
    "nan": lambda call: '{"reasoning": "r", "answer": "nan"}',
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_chat_without_an_answer_is_an_error_not_an_empty_stop(failure):
    with serving(create_app(["gsm8k.cot"], lm=ScriptedLM(FAILURES[failure]))) as url:
        plain = post(url, "/v1/chat/completions", CHAT)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=30)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="gsm8k.cot", messages=CHAT["messages"])
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30) as r:
            chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert plain.status_code == 502, plain.text  # before: 200 with content "" and finish_reason "stop"
    assert plain.json()["error"]["code"] == "no_answer" and plain.json()["error"]["message"]
    assert info.value.status_code == 502
    finish = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "error"
    assert finish[0]["choices"][0]["error"]["code"] == "no_answer"
    contents = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert all(not text for text in contents)  # no answer text was made up


def test_chat_with_an_exhausted_budget_and_no_answer_says_so():
    with serving(create_app(["gsm8k.cot"], lm=ScriptedLM(lambda call: {"reasoning": "r", "answer": 1},
                                                         delay_s=2.0))) as url:
        body = {**CHAT, "options": {"budget": {"deadline_s": 0.2}}}
        chat = post(url, "/v1/chat/completions", body)
        solved = post(url, "/v1/solve", {"question": "q", "options": {"budget": {"deadline_s": 0.2}}})
    assert chat.status_code == 502 and "budget" in chat.json()["error"]["message"], chat.text
    assert solved.status_code == 200 and solved.json()["answer"] is None and solved.json()["budget_exhausted"]
    assert "budget" in solved.json()["error"]


def test_chat_with_some_choices_answered_marks_the_others():
    count = {"n": 0}
    lock = threading.Lock()

    def script(call):
        with lock:
            count["n"] += 1
            first = count["n"] == 1
        return "garbage" if first else {"reasoning": "r", "answer": 18}

    with serving(create_app(["gsm8k.cot"], lm=ScriptedLM(script))) as url:
        reply = post(url, "/v1/chat/completions", {**CHAT, "n": 2})
    assert reply.status_code == 200, reply.text
    choices = sorted(reply.json()["choices"], key=lambda c: c["finish_reason"])
    assert [c["finish_reason"] for c in choices] == ["error", "stop"]
    assert choices[0]["message"]["content"] is None and choices[0]["error"]["code"] == "no_answer"
    assert choices[1]["message"]["content"] == "18"


# --- points 7 and 10: upstream bodies that are cut off, garbage, or without choices --------------------

CUT_OFF = b'{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assis'
NO_CHOICES = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "fake", "choices": [],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}}).encode()


@pytest.mark.parametrize("body", [CUT_OFF, b"garbage", b"[1, 2]", b"null", NO_CHOICES],
                         ids=["cut-off", "garbage", "a-list", "null", "no-choices"])
def test_a_bad_upstream_body_is_a_typed_502(body):
    with RawUpstream(body) as upstream:
        with serving(create_app(["gsm8k.cot", "gsm8k.sc@2"], lm=vllm(upstream.base_url))) as url:
            replies = [post(url, "/v1/solve", {"question": "q", "program": p}) for p in ("gsm8k.cot", "gsm8k.sc@2")]
    for reply in replies:
        assert reply.status_code == 502, reply.text  # before: 500 JSONDecodeError / AttributeError
        assert reply.json()["error"]["code"] == "UpstreamResponseError"


def test_no_choices_is_reported_as_no_choices_not_truncation():
    with RawUpstream(NO_CHOICES) as upstream:
        lm = vllm(upstream.base_url)
        with dspy.context(lm=lm, adapter=StructuredAdapter()):
            with pytest.raises(UpstreamResponseError, match="no choices"):
                dspy.Predict("question -> answer")(question="q")  # before: "all 0 completion(s) stopped at max_tokens"


def test_a_cut_off_body_is_an_upstream_response_error_in_the_library():
    with RawUpstream(CUT_OFF) as upstream:
        with dspy.context(lm=vllm(upstream.base_url), adapter=StructuredAdapter()):
            with pytest.raises(UpstreamResponseError, match="not valid JSON"):
                dspy.Predict("question -> answer")(question="q")


# --- point 4: a default deadline for every request ---------------------------------------------------

def test_a_hung_upstream_gets_a_504_at_the_default_deadline():
    assert ServeLimits().request_deadline_s == DEFAULT_REQUEST_DEADLINE_S == 120.0
    with FakeServer(["stall"], stall_s=10) as upstream:
        lm = vllm(upstream.base_url, timeout_s=300, max_retries=3)  # the LM layer alone would wait 20 minutes
        limits = ServeLimits(request_deadline_s=1.0)
        with serving(create_app(["gsm8k.cot"], lm=lm, limits=limits), shutdown_grace_s=1) as url:
            started = time.monotonic()
            solved = post(url, "/v1/solve", {"question": "q"})
            elapsed = time.monotonic() - started
            chat = post(url, "/v1/chat/completions", CHAT)
            models = httpx.get(f"{url}/v1/models").json()
    assert solved.status_code == 504 and solved.json()["error"]["code"] == "request_deadline", solved.text
    assert elapsed < 1.0 + 2.0
    assert chat.status_code == 504
    assert models["limits"]["request_deadline_s"] == 1.0  # the deadline is shown


def test_a_request_may_ask_for_its_own_deadline_within_the_bound():
    lm = ScriptedLM(lambda call: {"reasoning": "r", "answer": 1}, delay_s=1.5)
    limits = ServeLimits(request_deadline_s=30, max_request_deadline_s=60)
    with serving(create_app(["gsm8k.cot"], lm=lm, limits=limits)) as url:
        short = post(url, "/v1/solve", {"question": "q", "options": {"deadline_s": 0.3}})
        too_long = post(url, "/v1/solve", {"question": "q", "options": {"deadline_s": 61}})
        fine = post(url, "/v1/solve", {"question": "q", "options": {"deadline_s": 10}})
    assert short.status_code == 504
    assert too_long.status_code == 422 and too_long.json()["error"]["param"] == "deadline_s"
    assert fine.status_code == 200 and fine.json()["answer"] == 1


def test_the_deadline_ends_a_stream_with_an_error_event():
    lm = ScriptedLM(lambda call: {"reasoning": "r", "answer": 1}, delay_s=3)
    with serving(create_app(["gsm8k.cot"], lm=lm, limits=ServeLimits(request_deadline_s=0.5))) as url:
        with httpx.stream("POST", f"{url}/v1/solve/stream", json={"question": "q"}, timeout=30) as r:
            text = "".join(r.iter_text())
    assert "event: error" in text and "request_deadline" in text


# --- point 5: slow clients hold no slot --------------------------------------------------------------

def _half_body(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/solve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"question\": \"wh")
    return sock


def test_clients_that_send_half_a_body_take_no_slot_and_time_out_with_408():
    limits = ServeLimits(max_concurrency=2, body_timeout_s=1.5)
    app = create_app(["gsm8k.cot"], lm=ScriptedLM(lambda call: {"reasoning": "r", "answer": 7}), limits=limits)
    with serving(app) as url:
        port = int(url.rsplit(":", 1)[1])
        slow = [_half_body(port) for _ in range(4)]
        time.sleep(0.3)
        served = post(url, "/v1/solve", {"question": "q"})  # before: 503, every slot held by a half body
        replies = []
        for sock in slow:
            sock.settimeout(5)
            replies.append(sock.recv(4096))
            sock.close()
    assert served.status_code == 200 and served.json()["answer"] == 7, served.text
    assert all(r.startswith(b"HTTP/1.1 408") for r in replies), replies
    assert app.state.reasonflow.gate.in_flight == 0


def test_the_gate_still_answers_a_fast_503_past_the_limit():
    lm = ScriptedLM(lambda call: {"reasoning": "r", "answer": 7}, delay_s=1.0)
    with serving(create_app(["gsm8k.cot"], lm=lm, limits=ServeLimits(max_concurrency=1))) as url:
        first = threading.Thread(target=post, args=(url, "/v1/solve", {"question": "q"}))
        first.start()
        time.sleep(0.3)
        busy = post(url, "/v1/solve", {"question": "q"})
        first.join()
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "concurrency_limit"


# --- pot needs the sandbox; say so, refuse with a typed 503 before any LM call -------------------------

@pytest.fixture()
def no_jail(monkeypatch):
    monkeypatch.setattr(sandbox, "isolation", lambda: sandbox.Isolation(False, "bubblewrap (bwrap) is not installed"))
    monkeypatch.delenv(sandbox.ALLOW_UNISOLATED_ENV, raising=False)
    sandbox.allow_unisolated(None)
    sandbox.shutdown()
    yield
    sandbox.allow_unisolated(None)
    sandbox.shutdown()


def test_pot_is_refused_with_503_where_there_is_no_sandbox(no_jail, caplog):
    lm = ScriptedLM(lambda call: {"code": "answer = 1"})
    with caplog.at_level("WARNING", logger="reasonflow.serve"):
        app = create_app(["gsm8k.pot", "gsm8k.cot"], lm=lm)
    assert any("refused" in r.message for r in caplog.records)  # said once, at start
    with serving(app) as url:
        refused = post(url, "/v1/solve", {"question": "q", "program": "gsm8k.pot"})
        chat = post(url, "/v1/chat/completions", {**CHAT, "model": "gsm8k.pot"})
        other = post(url, "/v1/solve", {"question": "q", "program": "gsm8k.cot"})
        models = {m["id"]: m for m in httpx.get(f"{url}/v1/models").json()["data"]}
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "sandbox_unavailable", refused.text
    assert chat.status_code == 503
    assert [c.inputs.get("question") for c in lm.calls] == ["q"]  # only the cot request reached the LM
    assert other.status_code == 200
    assert models["gsm8k.pot"]["runs_code"] and models["gsm8k.pot"]["available"] is False
    assert models["gsm8k.cot"]["available"] is True


def test_pot_runs_unisolated_only_by_explicit_opt_in(no_jail):
    lm = ScriptedLM(lambda call: {"code": "answer = 6 * 7"})
    with serving(create_app(["gsm8k.pot"], lm=lm, allow_unisolated_code=True)) as url:
        solved = post(url, "/v1/solve", {"question": "q"})
    assert solved.status_code == 200 and solved.json()["answer"] == 42, solved.text


def test_readyz_answers_while_sandboxes_spin(jail):
    """/readyz runs on the event loop's default executor; the sandboxes no longer do (before: 4.6 s)."""
    spin = json.dumps({"code": "while True:\n    pass"})
    with FakeServer([completion(*[spin] * 8)]) as upstream:
        with serving(create_app(["gsm8k.pot@8"], lm=vllm(upstream.base_url))) as url:
            solving = threading.Thread(target=post, args=(url, "/v1/solve", {"question": "q"}))
            solving.start()
            time.sleep(1.0)
            started = time.monotonic()
            ready = httpx.get(f"{url}/readyz", timeout=30)
            waited = time.monotonic() - started
            solving.join()
    assert ready.status_code == 200 and waited < 1.0, waited


# --- point 10: SC at temperature 0 is refused, not silently resampled -----------------------------------

def test_sc_at_temperature_zero_is_refused_before_any_lm_call():
    lm = ScriptedLM(lambda call: {"reasoning": "r", "answer": 1})
    with serving(create_app(["gsm8k.sc@4", "gsm8k.pot@4"], lm=lm)) as url:
        sc = post(url, "/v1/solve", {"question": "q", "program": "gsm8k.sc@4", "options": {"temperature": 0}})
        pot = post(url, "/v1/solve", {"question": "q", "program": "gsm8k.pot@4", "options": {"temperature": 0.0}})
        one = post(url, "/v1/solve", {"question": "q", "program": "gsm8k.sc@4", "options": {"k": 1, "temperature": 0}})
    assert sc.status_code == 422 and "temperature" in sc.json()["error"]["message"], sc.text  # before: 200, T=0.7
    assert pot.status_code == 422
    assert one.status_code == 200 and len(lm.calls) == 1 and lm.calls[0].kwargs.get("temperature") == 0
    with pytest.raises(ConfigError, match="temperature"):
        get_program("gsm8k.sc", k=3, temperature=0.0)
