"""The server's REST API over real HTTP (uvicorn on loopback), driven by a scripted LM: solve, traces,
search events, models, health and readiness, compiled artifacts."""

from __future__ import annotations

import json

import httpx
import pytest

from reasonflow import VLLMLM
from reasonflow.config import LMConfig
from reasonflow.errors import ConfigError
from reasonflow.registry import get_program
from reasonflow.serve import ServeLimits, TraceStore, create_app
from reasonflow.serve.testing import serving
from reasonflow.testing import ScriptedLM
from reasonflow.trace import Trace
from tests.fakeserver import FakeServer, completion


def echo(call):
    """Answer 42; the reasoning says what the LM saw (temperature, n, max_tokens)."""
    return {"reasoning": f"T={call.kwargs.get('temperature')} n={call.n} max_tokens={call.kwargs.get('max_tokens')}",
            "answer": 42}


def kind(call) -> str:
    for field, name in (("next_step", "propose"), ("verdict", "value"), ("reasoning", "solve")):
        if f"`{field}`" in call.system:
            return name
    return "answer"


def tot_script(call):
    """Proposals 'step D.J'; a step ending in .0 is 'sure', others 'impossible'; depth 2 states the answer."""
    k = kind(call)
    if k == "propose":
        depth = len([s for s in call.inputs.get("steps", "").split("\n") if s.strip()])
        if depth >= 1:
            return [{"next_step": f"The answer is {5 + j}"} for j in range(call.n)]
        return [{"next_step": f"step {depth}.{j}"} for j in range(call.n)]
    if k == "value":
        last = call.inputs.get("steps", "").strip().split("\n")[-1]
        return {"verdict": "sure" if last.endswith((".0", "is 5")) else "impossible"}
    if k == "answer":
        return {"answer": 5}
    return echo(call)


@pytest.fixture()
def lm():
    return ScriptedLM(echo)


def post(url, path, body, **kw):
    return httpx.post(f"{url}{path}", json=body, timeout=30, **kw)


def test_solve_returns_answer_reasoning_usage_and_a_node_link_trace(lm):
    with serving(create_app(["gsm8k.cot", "gsm8k.sc@4"], lm=lm)) as url:
        r = post(url, "/v1/solve", {"program": "gsm8k.sc@4", "question": "What is 6*7?",
                                   "options": {"temperature": 0.9, "max_tokens": 623}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] == 42 and body["program"] == "gsm8k.sc@4"
    assert body["reasoning"] == "T=0.9 n=4 max_tokens=623"  # options reached the LM call
    assert body["usage"]["calls"] == 1 and body["usage"]["completion_tokens"] > 0
    trace = body["trace"]
    assert trace["format"] == "reasonflow.trace" and {"nodes", "edges", "graph"} <= set(trace)
    assert len(trace["nodes"]) == 5 and len(trace["edges"]) == 4  # root + 4 samples
    assert trace["graph"]["question"] == "What is 6*7?" and trace["graph"]["config"]["k"] == 4
    assert Trace.from_dict(trace).graph.number_of_edges() == 4
    assert len(body["trace_id"]) == 32


def test_solve_uses_the_first_served_program_by_default(lm):
    with serving(create_app(["gsm8k.cot", "gsm8k.sc@4"], lm=lm)) as url:
        r = post(url, "/v1/solve", {"question": "q"})
    assert r.json()["program"] == "gsm8k.cot" and r.json()["reasoning"].startswith("T=0.0 n=1")


def test_trace_is_fetched_by_id_as_json_or_html(lm):
    with serving(create_app(["gsm8k.cot"], lm=lm)) as url:
        solved = post(url, "/v1/solve", {"question": "What is <b>6*7</b>?"}).json()
        as_json = httpx.get(f"{url}/v1/traces/{solved['trace_id']}")
        as_html = httpx.get(f"{url}/v1/traces/{solved['trace_id']}", params={"format": "html"})
        missing = httpx.get(f"{url}/v1/traces/{'0' * 32}")
        bad_format = httpx.get(f"{url}/v1/traces/{solved['trace_id']}", params={"format": "xml"})
    assert as_json.status_code == 200 and as_json.json() == solved["trace"]
    assert as_html.status_code == 200 and as_html.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in as_html.headers["content-security-policy"]
    assert "<b>6*7</b>" not in as_html.text  # question text is embedded escaped, never as markup
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "trace_not_found"
    assert bad_format.status_code == 422


def test_trace_retention_keeps_only_the_newest_traces(lm):
    with serving(create_app(["gsm8k.cot"], lm=lm, limits=ServeLimits(trace_retention=3))) as url:
        ids = [post(url, "/v1/solve", {"question": f"q{i}"}).json()["trace_id"] for i in range(5)]
        codes = [httpx.get(f"{url}/v1/traces/{t}").status_code for t in ids]
    assert codes == [404, 404, 200, 200, 200]


def test_trace_store_is_fifo_and_rejects_a_bad_capacity():
    store = TraceStore(2)
    traces = [Trace(program="p", strategy="s", question=str(i)) for i in range(3)]
    ids = [store.put(t) for t in traces]
    assert len(store) == 2 and ids[0] not in store and store.get(ids[2]) is traces[2]
    with pytest.raises(ConfigError):
        TraceStore(0)


def sse_events(response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


def test_solve_stream_emits_expanded_scored_pruned_answer_and_done_events():
    lm = ScriptedLM(tot_script)
    with serving(create_app(["gsm8k.tot"], lm=lm)) as url:
        body = {"question": "q", "options": {"breadth": 1, "depth": 2, "proposals": 2}}
        with httpx.stream("POST", f"{url}/v1/solve/stream", json=body, timeout=30) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = sse_events(r)
        done = events[-1][1]
        stored = httpx.get(f"{url}/v1/traces/{done['trace_id']}").json()
    names = [n for n, _ in events]
    assert names[0] == "expanded" and events[0][1]["depth"] == 0
    assert {"expanded", "scored", "pruned", "answer"} <= set(names)
    assert names[-2:] == ["answer", "done"]
    assert names.index("scored") < names.index("pruned") < names.index("answer")
    assert str(done["answer"]) == "5" and done["dropped_events"] == 0 and "trace" not in done
    # every node the stream announced is in the stored trace, and nothing else
    assert sorted(d["id"] for n, d in events if n == "expanded") == sorted(n["id"] for n in stored["nodes"])
    pruned = {d["id"] for n, d in events if n == "pruned"}
    assert pruned == {n["id"] for n in stored["nodes"] if n["status"] == "pruned"}


def test_solve_stream_validates_before_streaming(lm):
    with serving(create_app(["gsm8k.cot"], lm=lm)) as url:
        r = post(url, "/v1/solve/stream", {"question": "q", "options": {"breadth": 2}})
    assert r.status_code == 422 and lm.calls == []


def test_models_lists_exactly_the_served_programs(lm):
    with serving(create_app(["gsm8k.sc@8", "gsm8k.cot"], lm=lm)) as url:
        data = httpx.get(f"{url}/v1/models").json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == ["gsm8k.sc@8", "gsm8k.cot"]
    assert data["data"][0]["strategy"] == "sc"


def test_unknown_or_duplicate_programs_fail_at_startup(lm):
    with pytest.raises(ConfigError, match="unknown program"):
        create_app(["gsm8k.nope"], lm=lm)
    with pytest.raises(ConfigError, match="both"):
        create_app(["gsm8k.cot", "gsm8k.cot"], lm=lm)


def test_healthz_answers_without_the_lm():
    lm = ScriptedLM(lambda call: pytest.fail("healthz must not call the LM"))
    with serving(create_app(["gsm8k.cot"], lm=lm)) as url:
        r = httpx.get(f"{url}/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and lm.calls == []


def test_readyz_checks_the_engine_with_a_one_token_completion():
    with FakeServer([completion("1")]) as engine:
        lm = VLLMLM(engine.base_url, "fake", config=LMConfig(timeout_s=5, max_retries=0))
        with serving(create_app(["gsm8k.cot"], lm=lm)) as url:
            r = httpx.get(f"{url}/readyz", timeout=30)
    assert r.status_code == 200 and r.json()["ready"] is True
    assert [b["max_tokens"] for b in engine.bodies] == [1]


def test_readyz_is_503_when_the_engine_is_down():
    from reasonflow.serve.testing import free_port

    lm = VLLMLM(f"http://127.0.0.1:{free_port()}/v1", "fake", config=LMConfig(timeout_s=2, max_retries=0))
    with serving(create_app(["gsm8k.cot"], lm=lm)) as url:
        r = httpx.get(f"{url}/readyz", timeout=30)
        health = httpx.get(f"{url}/healthz")
    assert r.status_code == 503 and r.json()["ready"] is False
    assert health.status_code == 200  # the process itself is fine


def test_compiled_artifact_is_served_by_stem_and_options_apply_to_a_copy(monkeypatch, tmp_path):
    from reasonflow import artifact

    path = tmp_path / "gsm8k_sc_tuned.json"
    artifact.save(get_program("gsm8k.sc@8", temperature=0.5), path,
                  manifest={"program": "gsm8k.sc", "options": {"k": 8, "temperature": 0.5}})
    lm = ScriptedLM(echo)
    with serving(create_app([str(path)], lm=lm)) as url:
        models = [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]
        custom = post(url, "/v1/solve", {"program": "gsm8k_sc_tuned", "question": "q",
                                         "options": {"k": 3, "temperature": 0.9, "budget": {"max_nodes": 50}}})
        plain = post(url, "/v1/solve", {"program": "gsm8k_sc_tuned", "question": "q"})
        bad = post(url, "/v1/solve", {"program": "gsm8k_sc_tuned", "question": "q", "options": {"breadth": 2}})
    assert models == ["gsm8k_sc_tuned"]
    assert custom.json()["reasoning"].startswith("T=0.9 n=3")
    assert custom.json()["trace"]["graph"]["config"]["budget"]["max_nodes"] == 50
    assert plain.json()["reasoning"].startswith("T=0.5 n=8")  # the first request's options did not stick
    assert bad.status_code == 422


@pytest.mark.parametrize("status,code", [(500, "upstream_timeout"), (401, "LMRequestError")])
def test_engine_failures_become_typed_http_errors(status, code):
    """A failing engine gives 504/502 with the error's type, as JSON, as an SSE error event, and as an
    error the openai client raises mid-stream; never a bare 500 traceback."""
    import openai

    with FakeServer([(status, {"message": "engine says no"})]) as engine:
        lm = VLLMLM(engine.base_url, "fake", config=LMConfig(timeout_s=5, max_retries=0))
        with serving(create_app(["gsm8k.cot"], lm=lm)) as url:
            solved = post(url, "/v1/solve", {"question": "q"})
            with httpx.stream("POST", f"{url}/v1/solve/stream", json={"question": "q"}, timeout=30) as r:
                events = sse_events(r)
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.APIError, match="engine"):
                list(client.chat.completions.create(model="gsm8k.cot", stream=True,
                                                    messages=[{"role": "user", "content": "q"}]))
    assert solved.status_code == (504 if status == 500 else 502)
    assert solved.json()["error"]["code"] == code and "engine says no" in solved.json()["error"]["message"]
    assert events[-1][0] == "error" and events[-1][1]["error"]["code"] == code
