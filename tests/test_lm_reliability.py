"""ARCHITECTURE §5 cases 1-5 for the LM layer, against a scripted HTTP server on loopback."""

import json
import time

import dspy
import pytest

from reasonflow import StructuredAdapter, VLLMLM, track_usage
from reasonflow.config import LMConfig
from reasonflow.errors import (ConfigError, ContextOverflowError, LMRequestError, LMTimeoutError, ParseError,
                               TruncatedError)
from tests.fakeserver import FakeServer, completion

FAST = LMConfig(timeout_s=0.5, max_retries=2)
GOOD = json.dumps({"reasoning": "48/2=24, 48+24=72", "answer": 72})


def cot(server, config=FAST, **kw):
    lm = VLLMLM(server.base_url, "fake", config=config, **kw)
    return lm, dspy.ChainOfThought("question -> answer: float")


def run(server, config=FAST, n=1, **kw):
    lm, program = cot(server, config, **kw)
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        if n > 1:
            return program(question="q", config={"n": n, "temperature": 0.8})
        return program(question="q")


def test_stalled_server_raises_timeout_after_bounded_retries():
    with FakeServer(["stall"], stall_s=3) as srv:
        started = time.perf_counter()
        with pytest.raises(LMTimeoutError):
            run(srv)
        elapsed = time.perf_counter() - started
    assert len(srv.arrivals) == FAST.max_retries + 1
    assert elapsed < (FAST.max_retries + 1) * FAST.timeout_s + 6  # timeouts plus bounded backoff


def test_503_is_retried_then_succeeds():
    with FakeServer([(503, {"error": "busy"}), completion(GOOD)]) as srv:
        assert run(srv).answer == 72
    assert len(srv.arrivals) == 2


def test_429_honours_retry_after():
    with FakeServer([(429, {"error": "slow down"}, {"Retry-After": "1"}), completion(GOOD)]) as srv:
        assert run(srv).answer == 72
    gap = srv.arrivals[1] - srv.arrivals[0]
    assert 0.9 <= gap < 5


def test_connection_reset_is_retried_then_typed_error():
    with FakeServer(["reset"]) as srv:
        with pytest.raises(LMTimeoutError):
            run(srv)
    assert len(srv.arrivals) == FAST.max_retries + 1


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_not_retried(status):
    with FakeServer([(status, {"error": {"message": "no"}})]) as srv:
        with pytest.raises(LMRequestError) as info:
            run(srv)
    assert info.value.status_code == status
    assert len(srv.arrivals) == 1


def test_context_overflow_is_typed_and_not_retried():
    msg = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens."
    with FakeServer([(400, {"error": {"message": msg}})]) as srv:
        with pytest.raises(ContextOverflowError):
            run(srv)
    assert len(srv.arrivals) == 1


def test_truncated_completion_is_never_an_answer():
    with FakeServer([completion('{"reasoning": "and then and then', finish_reason="length")]) as srv:
        with track_usage() as usage, pytest.raises(TruncatedError) as info:
            run(srv)
    assert "and then" in info.value.raw_text
    assert usage.truncated == 1


def test_truncated_samples_are_dropped_and_counted():
    reply = completion(GOOD, '{"reasoning": "cut', GOOD, finish_reason=["stop", "length", "stop"])
    with FakeServer([reply]) as srv, track_usage() as usage:
        pred = run(srv, n=3)
    assert [c for c in pred.completions.answer] == [72, 72]
    assert usage.truncated == 1 and usage.finish_reasons["length"] == 1


@pytest.mark.parametrize("text", ["I think it is 72", "", '{"reasoning": "x"}'])
def test_unparseable_output_raises_parse_error_with_raw_text(text):
    with FakeServer([completion(text)]) as srv:
        with pytest.raises(ParseError) as info:
            run(srv)
    assert info.value.raw_text == text or (text == "" and info.value.raw_text in ("", "None"))


def test_one_bad_sample_does_not_sink_the_others():
    with FakeServer([completion(GOOD, "garbage", GOOD)]) as srv, track_usage() as usage:
        pred = run(srv, n=3)
    assert len(pred.completions.answer) == 2
    assert usage.parse_failures == 1


def test_n_samples_go_out_as_one_request_with_schema():
    with FakeServer([completion(GOOD, GOOD, GOOD, GOOD)]) as srv:
        run(srv, n=4)
    assert len(srv.bodies) == 1
    body = srv.bodies[0]
    assert body["n"] == 4
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["reasoning"]["maxLength"] > 0
    assert schema["required"] == ["reasoning", "answer"]


def test_n_above_one_at_temperature_zero_is_refused_before_any_request():
    with FakeServer([completion(GOOD)]) as srv:
        lm = VLLMLM(srv.base_url, "fake", config=FAST)
        with pytest.raises(ConfigError):
            lm("hi", n=4, temperature=0.0)
    assert srv.arrivals == []


def test_usage_records_tokens_latency_and_finish_reason():
    with FakeServer([completion(GOOD, prompt_tokens=123, cached=64)]) as srv, track_usage() as usage:
        run(srv)
    (rec,) = usage.records
    assert (rec.prompt_tokens, rec.completion_tokens, rec.cached_tokens) == (123, 7, 64)
    assert rec.finish_reasons == ["stop"] and rec.latency_s > 0
    assert usage.to_dict()["total_tokens"] == 130


def test_max_sequences_caps_what_is_in_flight_one_sample_per_request():
    import asyncio

    def reply(body):
        return completion(*[GOOD] * body.get("n", 1))

    with FakeServer([reply], delay_s=0.3) as srv, track_usage() as usage:
        lm = VLLMLM(srv.base_url, "fake", config=LMConfig(timeout_s=5, max_retries=0, max_sequences=8))
        program = dspy.ChainOfThought("question -> answer: float")

        async def many():
            with dspy.context(lm=lm, adapter=StructuredAdapter()):
                return await asyncio.gather(*(program.acall(question=f"q{i}", config={"n": 4, "temperature": 0.8,
                                                                                      "seed": 7})
                                              for i in range(6)))

        results = asyncio.run(many())
    arrivals = sorted(srv.arrivals)
    # 6 calls of n=4 under a cap of 8 sequences: 24 one-sample requests, 8 at a time, three waves ~0.3 s apart
    assert len(arrivals) == 24 and all(b["n"] == 1 for b in srv.bodies)
    waves = [arrivals[i + 1] - arrivals[i] for i in range(23)]
    assert sum(gap > 0.2 for gap in waves) == 2
    assert arrivals[-1] - arrivals[0] >= 0.5
    assert sorted(b["seed"] for b in srv.bodies if "q0" in json.dumps(b["messages"])) == [7, 8, 9, 10]
    # one call, one record, one response of 4 choices: as vLLM answers n=4
    assert len(usage.records) == 6 and all(r.n == 4 and r.completion_tokens == 28 for r in usage.records)
    assert all(r.prompt_tokens == 11 for r in usage.records)  # the prompt once, as for n=4
    assert all(len(p.completions) == 4 for p in results)


def test_without_a_cap_or_with_split_samples_off_an_n_call_is_one_request():
    import asyncio

    for config in (LMConfig(max_retries=0), LMConfig(max_retries=0, max_sequences=8, split_samples=False)):
        with FakeServer([completion(GOOD, GOOD, GOOD)]) as srv:
            lm = VLLMLM(srv.base_url, "fake", config=config)
            out = asyncio.run(lm.acall("q", n=3, temperature=0.8))
        assert len(out) == 3 and [b["n"] for b in srv.bodies] == [3]


def test_a_failed_sample_request_cancels_the_others_and_raises_its_typed_error():
    import asyncio

    def reply(body):
        seed = body.get("seed")
        if seed == 2:
            return 400, {"error": {"message": "bad sample"}}
        return "stall" if seed < 100 else completion(GOOD)

    with FakeServer([reply], stall_s=3.0) as srv:
        lm = VLLMLM(srv.base_url, "fake", config=LMConfig(timeout_s=5, max_retries=0, max_sequences=8))

        async def calls():
            started = time.perf_counter()
            with pytest.raises(LMRequestError, match="bad sample"):
                await lm.acall("q", n=4, temperature=0.8, seed=0)
            failed_after = time.perf_counter() - started
            # every slot came back: a call that needs all 8 passes the gate at once
            out = await asyncio.wait_for(lm.acall("q", n=8, temperature=0.8, seed=100), timeout=2.0)
            return failed_after, out

        failed_after, out = asyncio.run(calls())
    assert failed_after < 2.5 and len(out) == 8  # the stalled samples were not waited for
