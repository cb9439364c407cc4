"""evals/utilisation.py counts the engine's real work (computed prompt tokens plus generated ones)
against a mixed peak of the same shape, offline against a scripted server."""

import asyncio
import importlib.util
import sys
from pathlib import Path

import dspy
import pytest

import reasonflow

from reasonflow.config import LMConfig
from reasonflow.lm import VLLMLM
from tests.fakeserver import FakeServer, completion

_spec = importlib.util.spec_from_file_location("utilisation", Path(__file__).parents[1] / "evals" / "utilisation.py")
utilisation = importlib.util.module_from_spec(_spec)
sys.modules["utilisation"] = utilisation  # dataclasses look their module up there
_spec.loader.exec_module(utilisation)


class FakeEngine:
    """A scripted server that keeps vLLM's counters: a prompt costs 20 computed tokens of template
    plus one per word (shared by its n samples) and 10 cached ones; each sample generates 7 tokens.
    Its usage reports what vLLM reports for n > 1: one sample's cached tokens (here: all of them)."""

    def __init__(self, server: FakeServer, running: float = 0.0):
        self.server = server
        server.counters.update({utilisation.PROMPT_TOKENS: 0, utilisation.CACHED_TOKENS: 0,
                                utilisation.GENERATED_TOKENS: 0, utilisation.RUNNING: running})

    def __call__(self, body):
        words, n = body["messages"][0]["content"].count(utilisation.FILLER), body.get("n", 1)
        counters = self.server.counters
        counters[utilisation.PROMPT_TOKENS] += 30 + words
        counters[utilisation.CACHED_TOKENS] += 10
        counters[utilisation.GENERATED_TOKENS] += 7 * n
        return completion(*["x"] * n, prompt_tokens=30 + words, cached=30 + words)


def _engine(**kwargs) -> tuple[FakeServer, FakeEngine]:
    server = FakeServer([], **kwargs)
    engine = FakeEngine(server)
    server.script = [engine]
    return server, engine


def test_the_mixed_peak_counts_the_engines_computed_prompt_tokens_plus_generated_ones_and_shares_no_prefix():
    server, _ = _engine()
    with server:
        peak = asyncio.run(utilisation.mixed_peak(server.base_url, "fake", 3, prompt_tokens=40.4,
                                                  completion_tokens=6.6, rounds=2))
    first, second, *bodies = server.bodies
    # calibration: a 1-word and a 64-word prompt; the template's 20 computed tokens count towards the 40
    assert [b["messages"][0]["content"].count(utilisation.FILLER) for b in (first, second)] == [1, 64]
    assert all(b["messages"][0]["content"].count(utilisation.FILLER) == 20 for b in bodies)
    assert (peak.requests, peak.sequences, peak.prompt_tokens, peak.completion_tokens) == (6, 6, 6 * 40, 6 * 7)
    assert peak.tok_s == pytest.approx((240 + 42) / peak.wall_s)
    assert all(b["max_tokens"] == b["min_tokens"] == 7 and b["ignore_eos"] and b["n"] == 1 for b in bodies)
    assert len({b["messages"][0]["content"].split(":")[0] for b in bodies}) == 6  # each starts with its own number
    server, _ = _engine()
    with server:
        asyncio.run(utilisation.mixed_peak(server.base_url, "fake", 3, prompt_tokens=40, completion_tokens=7))
    prefixes = {b["messages"][0]["content"].split(":")[0] for b in server.bodies[2:]}
    assert not prefixes & {b["messages"][0]["content"].split(":")[0] for b in bodies}  # nor with another peak's


def test_the_mixed_peak_asks_for_the_programs_samples_per_request_within_the_same_sequences_in_flight():
    server, _ = _engine(delay_s=0.05)
    with server:
        peak = asyncio.run(utilisation.mixed_peak(server.base_url, "fake", 8, prompt_tokens=25, completion_tokens=7,
                                                  samples=3.7, rounds=2))
        bodies, arrivals = server.bodies[2:], sorted(server.arrivals[2:6])
        too_many = asyncio.run(utilisation.mixed_peak(server.base_url, "fake", 2, prompt_tokens=1,
                                                      completion_tokens=1, samples=8))
    assert all(b["n"] == 4 for b in bodies)  # the mean n, rounded
    assert (peak.requests, peak.sequences) == (4, 16)  # 2 rounds of 8 sequences
    assert peak.request_shape() == (25.0, 4.0)
    assert arrivals[2] - arrivals[0] >= 0.04  # 8 sequences in flight: two requests of 4, then the next two
    assert too_many.sequences == too_many.requests * 2  # n is capped at the sequences in flight


def test_the_guided_mixed_peak_has_the_same_shape_under_a_json_schema_and_leaves_eos_to_the_grammar():
    server, _ = _engine()
    with server:
        peak = asyncio.run(utilisation.mixed_peak(server.base_url, "fake", 2, prompt_tokens=32, completion_tokens=5,
                                                  guided=True, rounds=2))
    bodies = server.bodies[2:]
    assert (peak.sequences, peak.prompt_tokens) == (4, 4 * 32)
    assert all(b["response_format"] == utilisation.GUIDED_FORMAT and b["max_tokens"] == 5 for b in bodies)
    assert not any("ignore_eos" in b or "min_tokens" in b for b in server.bodies)
    assert all(b["messages"][0]["content"].count(utilisation.FILLER) == 12 for b in bodies)


def test_a_programs_work_is_the_engines_count_not_the_usage_which_undercounts_n_samples():
    questions = [dspy.Example(question=f"What is 4 + {i}?").with_inputs("question") for i in range(2)]
    server, engine = _engine(delay_s=0.05)

    def answer(body):
        engine(body)
        return completion(*['{"reasoning": "4 + 4", "answer": "8"}'] * body.get("n", 1), prompt_tokens=100,
                          cached=100)

    server.script = [answer]
    server.counters[utilisation.RUNNING] = 12
    with server:
        lm = VLLMLM(server.base_url, "fake", config=LMConfig(max_sequences=16))
        work, calls, errors = asyncio.run(utilisation.achieved(reasonflow.program("gsm8k.sc@8"), questions, lm))
    assert (calls, errors) == (2, 0)
    words = [b["messages"][-1]["content"].count(utilisation.FILLER) for b in server.bodies]
    assert (work.sequences, work.prompt_tokens, work.completion_tokens) == (16, sum(20 + w for w in words), 2 * 8 * 7)
    assert work.shape()[1] == 7.0
    assert work.requests == 2 and work.request_shape()[1] == 8.0  # one n=8 request per question
    assert work.mean_running == 12
    figures = utilisation.utilisation(work, work, 1.0, 1.0, cap=16)
    assert (figures["occupancy"], figures["peak_occupancy"]) == (0.75, 0.75)


def test_a_server_without_vllms_counters_is_refused_with_what_is_missing():
    with FakeServer([completion("x")]) as server:
        with pytest.raises(SystemExit, match="vllm:prompt_tokens_total"):
            asyncio.run(utilisation.mixed_peak(server.base_url, "fake", 2, prompt_tokens=5, completion_tokens=5))


def test_utilisation_divides_engine_work_by_the_mixed_peak_and_keeps_the_generated_only_figure():
    work = utilisation.EngineWork(sequences=4, prompt_tokens=300, completion_tokens=100, wall_s=1.0)
    mixed = utilisation.EngineWork(sequences=8, prompt_tokens=600, completion_tokens=200, wall_s=1.0)
    figures = utilisation.utilisation(work, mixed, peak=400.0, guided_peak=200.0)
    assert figures == {"utilisation": 0.5, "vs_guided_mixed": None, "occupancy": None, "peak_occupancy": None,
                       "generated_only": 0.25, "generated_only_vs_guided_peak": 0.5}
    guided_mixed = utilisation.EngineWork(sequences=8, prompt_tokens=400, completion_tokens=100, wall_s=1.0)
    assert utilisation.utilisation(work, mixed, 400.0, 200.0, guided_mixed)["vs_guided_mixed"] == 0.8
    assert utilisation.utilisation(work, mixed, peak=0.0, guided_peak=0.0)["generated_only"] is None
