"""One LM over several replicas (issue #17, item 1), against scripted HTTP servers on loopback: the
least-loaded replica gets a request, a search run stays on one replica, a replica that refuses or
times out is skipped for its back-off and its requests are answered elsewhere within the retry
budget, usage counts each call once with per-replica figures, and /metrics are summed. A replica that
is a real process killed in the middle of a bench is in tests/test_engine_replicas.py."""

import asyncio
import json
import time

import dspy
import pytest

import reasonflow
from reasonflow import StructuredAdapter, VLLMLM, track_usage
from reasonflow.bench.engine_metrics import hit_rate, scrape
from reasonflow.config import LMConfig
from reasonflow.engine.server import free_port, is_ready
from reasonflow.engine.throughput import peak_throughput
from reasonflow.errors import ConfigError, LMRequestError, LMTimeoutError
from reasonflow.lm import connect, resolve_base_url
from reasonflow.replicas import replica_affinity, split_base_urls
from reasonflow.search import SearchStrategy, predict
from tests.fakeserver import FakeServer, completion

GOOD = json.dumps({"reasoning": "48/2=24, 48+24=72", "answer": 72})
ANSWER = completion(GOOD)
MESSAGES = [{"role": "user", "content": "hi"}]
FAST = LMConfig(timeout_s=0.5, max_retries=2, replica_backoff_s=30)


def dead_url() -> str:
    """A loopback port nothing listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}/v1"


def pool(*servers_or_urls, config=FAST, **kw) -> VLLMLM:
    urls = [s if isinstance(s, str) else s.base_url for s in servers_or_urls]
    return VLLMLM(urls, "fake", config=config, **kw)


async def calls(lm, count, **kw):
    return await asyncio.gather(*(lm.aforward(messages=MESSAGES, **kw) for _ in range(count)))


def test_base_urls_are_split_normalised_and_checked():
    assert split_base_urls(" http://a/v1/ , http://b/v1,") == ("http://a/v1", "http://b/v1")
    assert split_base_urls(["http://a/v1"]) == ("http://a/v1",)
    for bad in ("", " , ", "http://a/v1,http://a/v1/", [1]):
        with pytest.raises(ConfigError):
            split_base_urls(bad)
    with pytest.raises(ConfigError):
        split_base_urls([f"http://h{i}/v1" for i in range(65)])


def test_a_comma_separated_reasonflow_base_url_is_one_lm_over_every_replica(monkeypatch):
    with FakeServer([ANSWER]) as a, FakeServer([ANSWER]) as b:
        monkeypatch.setenv("REASONFLOW_BASE_URL", f"{a.base_url}, {b.base_url}")
        assert resolve_base_url() == f"{a.base_url},{b.base_url}"
        lm = connect()
        assert lm.base_urls == (a.base_url, b.base_url) and lm.base_url == f"{a.base_url},{b.base_url}"
        asyncio.run(calls(lm, 2))  # both in flight at once: one each
    assert len(a.bodies) == len(b.bodies) == 1


def test_connect_refuses_a_replica_that_serves_another_model():
    with FakeServer([ANSWER]) as a, FakeServer([ANSWER], models=[{"id": "other", "object": "model"}]) as b:
        with pytest.raises(ConfigError, match="every replica"):
            connect([a.base_url, b.base_url])


def test_one_url_keeps_the_openai_clients_own_retries_and_no_replica_figures():
    with FakeServer([(503, {"error": "busy"}), ANSWER]) as a, track_usage() as usage:
        lm = VLLMLM(a.base_url, "fake", config=FAST)
        lm.forward(messages=MESSAGES)
    assert lm.pool.replicas[0].client.max_retries == FAST.max_retries and lm._one is not None
    assert len(a.arrivals) == 2 and "replicas" not in usage.to_dict()
    assert lm.pool.stats()[0]["calls"] == 0  # the single-endpoint path does no pool bookkeeping


def test_a_request_goes_to_the_replica_with_the_fewest_sequences_in_flight():
    with FakeServer([completion(GOOD, GOOD, GOOD, GOOD)], delay_s=0.3) as a, FakeServer([ANSWER], delay_s=0.3) as b:
        lm = pool(a, b, temperature=0.7)

        async def run():
            first = asyncio.ensure_future(lm.aforward(messages=MESSAGES, n=4))  # a: 4 in flight
            await asyncio.sleep(0.05)
            assert [s["in_flight"] for s in lm.pool.stats()] == [4, 0]
            rest = await calls(lm, 3)  # b has 0, 1, 2 < 4: all three go to b
            await first
            return rest

        asyncio.run(run())
    assert [body.get("n", 1) for body in a.bodies] == [4] and len(b.bodies) == 3
    assert [s["in_flight"] for s in lm.pool.stats()] == [0, 0]
    assert [s["sequences"] for s in lm.pool.stats()] == [4, 3]


def test_requests_inside_one_run_stay_on_one_replica_and_runs_spread():
    with FakeServer([ANSWER], delay_s=0.1) as a, FakeServer([ANSWER], delay_s=0.1) as b:
        lm = pool(a, b)

        async def one_run():
            with replica_affinity(), track_usage() as usage:
                await calls(lm, 3)
                with replica_affinity():  # a nested run keeps the outer pin
                    await calls(lm, 3)  # the second round: the same replica although both are idle
            return set(usage.replicas)

        async def two_runs():
            return await asyncio.gather(one_run(), one_run())

        first, second = asyncio.run(two_runs())
    assert first == {a.base_url} and second == {b.base_url}
    assert len(a.bodies) == len(b.bodies) == 6


class TwoRounds(SearchStrategy):
    """A search of two sequential requests, then three concurrent ones (the search base's own run)."""

    name = "two_rounds"

    def __init__(self, task):
        super().__init__(task)
        self.solve = dspy.ChainOfThought(task.solve)

    async def search(self, run):
        await predict(self.solve, question=run.question)
        await predict(self.solve, question=run.question)
        await asyncio.gather(*(predict(self.solve, question=run.question) for _ in range(3)))


def test_each_search_run_keeps_to_the_replica_its_first_request_went_to():
    program = TwoRounds(reasonflow.program("gsm8k.cot").task)
    with FakeServer([ANSWER], delay_s=0.05) as a, FakeServer([ANSWER], delay_s=0.05) as b:
        lm = pool(a, b)

        async def runs():
            with dspy.context(lm=lm, adapter=StructuredAdapter()):
                return await asyncio.gather(*(program.acall(question=f"q{i}") for i in range(4)))

        preds = asyncio.run(runs())
    used = [set(p.usage["replicas"]) for p in preds]
    assert all(len(u) == 1 for u in used), used  # every run on one replica
    assert set().union(*used) == {a.base_url, b.base_url}  # and the runs on both
    assert all(p.usage["calls"] == 5 for p in preds) and len(a.bodies) + len(b.bodies) == 20


def test_a_refusing_replica_is_skipped_for_its_backoff_and_its_call_answered_elsewhere():
    down = dead_url()
    with FakeServer([ANSWER]) as b, track_usage() as usage:
        lm = pool(down, b, config=LMConfig(timeout_s=2, max_retries=2, replica_backoff_s=0.5))
        lm.forward(messages=MESSAGES)  # tie: the first replica, refused, then b at once
        lm.forward(messages=MESSAGES)  # the first is backing off: straight to b
        time.sleep(0.6)
        lm.forward(messages=MESSAGES)  # back-off over: the first is probed once more
    dead, live = lm.pool.stats()
    assert (dead["failures"], dead["calls"], live["calls"]) == (2, 0, 3) and len(b.bodies) == 3
    assert usage.calls == 3 and usage.errors == 0
    assert usage.replicas[down]["failed_attempts"] == 2 and usage.replicas[b.base_url]["calls"] == 3


def test_a_pinned_run_moves_when_its_replica_times_out_and_stays_moved():
    with FakeServer(["stall"], stall_s=3) as a, FakeServer([ANSWER]) as b:
        lm = pool(a, b, config=LMConfig(timeout_s=0.5, max_retries=1))

        async def run():
            with replica_affinity():
                started = time.perf_counter()
                await lm.aforward(messages=MESSAGES)  # a (the tie) stalls past its timeout: b answers
                elapsed = time.perf_counter() - started
                await calls(lm, 2)
            return elapsed

        elapsed = asyncio.run(run())
    assert len(a.arrivals) == 1 and len(b.bodies) == 3  # no retry on a: the client does not retry a pool
    assert elapsed < 0.5 + 1.0
    assert not lm.pool.stats()[0]["up"]


def test_a_connection_reset_in_flight_is_retried_on_another_replica_and_counted_once():
    with FakeServer(["reset"]) as a, FakeServer([completion(GOOD, prompt_tokens=30)]) as b, track_usage() as usage:
        lm = pool(a, b)
        asyncio.run(calls(lm, 4))
    assert len(a.arrivals) >= 1 and len(b.bodies) == 4
    assert usage.calls == 4 and usage.errors == 0 and usage.prompt_tokens == 4 * 30
    assert usage.prompt_tokens == sum(r.prompt_tokens for r in usage.records)
    assert usage.replicas[a.base_url]["failed_attempts"] == len(a.arrivals)
    assert usage.replicas[a.base_url]["calls"] == 0 and usage.replicas[b.base_url]["calls"] == 4


def test_when_every_replica_is_down_the_call_fails_typed_within_its_retry_budget():
    urls = [dead_url(), dead_url()]
    lm = pool(*urls, config=LMConfig(timeout_s=1, max_retries=2))
    with track_usage() as usage, pytest.raises(LMTimeoutError, match="could not reach") as err:
        lm.forward(messages=MESSAGES)
    assert all(url in str(err.value) for url in urls)
    (rec,) = usage.records
    assert rec.error == "APIConnectionError" and len(rec.failed_on) == 3  # 1 try + 2 retries, none doubled
    assert usage.errors == 1 and usage.calls == 1


def test_a_client_error_is_not_retried_on_another_replica():
    with FakeServer([(401, {"error": {"message": "no"}})]) as a, FakeServer([ANSWER]) as b:
        lm = pool(a, b)
        with pytest.raises(LMRequestError):
            lm.forward(messages=MESSAGES)
    assert len(a.arrivals) == 1 and not b.bodies and lm.pool.stats()[0]["up"]


def test_a_busy_replica_is_retried_after_its_retry_after():
    with FakeServer([(429, {"error": "slow"}, {"Retry-After": "1"}), ANSWER]) as a:
        lm = pool(a, dead_url())
        with replica_affinity():
            lm.forward(messages=MESSAGES)
    assert len(a.arrivals) == 2 and 0.9 <= a.arrivals[1] - a.arrivals[0] < 5
    assert lm.pool.stats()[0]["up"]  # a 429 is not a failure of the replica


def test_the_sequence_cap_is_per_replica():
    def reply(body):
        return completion(*[GOOD] * body.get("n", 1))

    with FakeServer([reply], delay_s=0.3) as a, FakeServer([reply], delay_s=0.3) as b:
        lm = pool(a, b, config=LMConfig(timeout_s=5, max_retries=0, max_sequences=4), temperature=0.8)
        started = time.perf_counter()
        answers = asyncio.run(calls(lm, 4, n=4))  # 16 one-sample requests, 4 per replica at once: two waves
        elapsed = time.perf_counter() - started
    assert len(a.bodies) == len(b.bodies) == 8 and all(body["n"] == 1 for body in a.bodies + b.bodies)
    assert all(len(answer.choices) == 4 for answer in answers)
    assert 0.55 <= elapsed < 1.5
    gaps = [sorted(s.arrivals)[4] - sorted(s.arrivals)[3] for s in (a, b)]
    assert all(gap > 0.25 for gap in gaps)


def test_metrics_and_readiness_cover_every_replica():
    with FakeServer([ANSWER], metrics_per_request=(3, 4)) as a, FakeServer([ANSWER], metrics_per_request=(1, 4)) as b:
        lm = pool(a, b)

        async def measured():
            before = await scrape(lm.base_url)
            await calls(lm, 2)  # one each
            return before, await scrape(lm.base_url)

        before, after = asyncio.run(measured())
        assert after["vllm:prefix_cache_hits_total"] == 4 and after["vllm:prefix_cache_queries_total"] == 8
        assert after[f'vllm:prefix_cache_hits_total{{replica="{a.base_url}"}}'] == 3
        assert hit_rate(before, after) == 0.5
        assert is_ready(f"{dead_url()},{b.base_url}") and not is_ready(f"{dead_url()},{dead_url()}")
        assert asyncio.run(scrape(f"{a.base_url},{dead_url()}")) is None  # a partial sum would mislead


def test_the_peak_of_a_pool_splits_its_concurrency_across_replicas():
    with FakeServer([ANSWER], delay_s=0.5) as a, FakeServer([ANSWER], delay_s=0.5) as b:
        peak = asyncio.run(peak_throughput(f"{a.base_url},{b.base_url}", 4, model="fake", rounds=1))
    assert len(a.bodies) == len(b.bodies) == 2 and peak.requests == 4 and peak.completion_tokens == 4 * 7
    assert 0.5 <= peak.wall_s < 1.5  # all four at once (one after another would take 2 s)


def _one_at_a_time(latency_s: float):
    """A replica of fixed capacity: one request at a time, ``latency_s`` each."""
    import threading

    lock = threading.Lock()

    def step(body):
        with lock:
            time.sleep(latency_s)
        return ANSWER

    return step


def test_replicas_of_fixed_capacity_answer_in_parallel():
    """8 one-at-a-time replicas each get the same share and work at once: far more than one replica's
    calls per second. (The >= 0.9 x linear goal is a figure, printed by evals/replica_scaling.py; here
    only a bound no loaded machine misses: half of linear, where serial calls would give 1/8.)"""
    latency, per_replica, rates = 0.4, 6, {}
    for count in (1, 8):
        servers = [FakeServer([_one_at_a_time(latency)]) for _ in range(count)]
        for server in servers:
            server.__enter__()
        try:
            lm = pool(*servers, config=LMConfig(timeout_s=30, max_retries=0))
            asyncio.run(calls(lm, count))  # warm: connections and clients
            started = time.perf_counter()
            asyncio.run(calls(lm, count * per_replica))
            rates[count] = count * per_replica / (time.perf_counter() - started)
            assert [len(s.bodies) for s in servers] == [per_replica + 1] * count  # spread evenly
        finally:
            for server in servers:
                server.__exit__(None, None, None)
    assert rates[8] >= 0.5 * 8 * rates[1], rates
