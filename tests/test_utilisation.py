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


def test_the_mixed_peak_counts_computed_prompt_tokens_plus_generated_ones_and_shares_no_prefix():
    with FakeServer([completion("x", prompt_tokens=50, cached=10)]) as server:
        peak = asyncio.run(utilisation.mixed_peak(server.base_url, "fake", 3, prompt_tokens=20.4,
                                                  completion_tokens=6.6))
    assert (peak.sequences, peak.prompt_tokens, peak.completion_tokens) == (6, 6 * 40, 6 * 7)
    assert peak.tok_s == pytest.approx((240 + 42) / peak.wall_s)
    assert all(b["max_tokens"] == b["min_tokens"] == 7 and b["ignore_eos"] for b in server.bodies)
    prompts = [b["messages"][0]["content"] for b in server.bodies]
    assert all(p.count(utilisation.FILLER) == 20 for p in prompts)
    assert len({p.split(":")[0] for p in prompts}) == 6  # each starts with its own number


def test_the_guided_mixed_peak_has_the_same_shape_under_a_json_schema_and_leaves_eos_to_the_grammar():
    with FakeServer([completion('{"story": "x', prompt_tokens=30)]) as server:
        peak = asyncio.run(utilisation.mixed_peak(server.base_url, "fake", 2, prompt_tokens=12, completion_tokens=5,
                                                  guided=True))
    assert (peak.sequences, peak.prompt_tokens) == (4, 4 * 30)
    assert all(b["response_format"] == utilisation.GUIDED_FORMAT and b["max_tokens"] == 5 for b in server.bodies)
    assert not any("ignore_eos" in b or "min_tokens" in b for b in server.bodies)
    assert all(b["messages"][0]["content"].count(utilisation.FILLER) == 12 for b in server.bodies)


def test_a_programs_work_excludes_prefix_cache_hits_and_counts_every_sequence():
    def answer(body):
        return completion(*['{"reasoning": "4 + 4", "answer": "8"}'] * body.get("n", 1), prompt_tokens=100, cached=60)

    questions = [dspy.Example(question=f"What is 4 + {i}?").with_inputs("question") for i in range(2)]
    with FakeServer([answer]) as server:
        lm = VLLMLM(server.base_url, "fake", config=LMConfig(max_sequences=8))
        program = reasonflow.program("gsm8k.sc@8")
        work, calls, errors = asyncio.run(utilisation.achieved(program, questions, lm))
    assert (calls, errors) == (2, 0)
    assert (work.sequences, work.prompt_tokens, work.completion_tokens) == (16, 2 * 40, 2 * 8 * 7)
    assert work.shape() == (5.0, 7.0)


def test_utilisation_divides_engine_work_by_the_mixed_peak_and_keeps_the_generated_only_figure():
    work = utilisation.EngineWork(sequences=4, prompt_tokens=300, completion_tokens=100, wall_s=1.0)
    mixed = utilisation.EngineWork(sequences=8, prompt_tokens=600, completion_tokens=200, wall_s=1.0)
    figures = utilisation.utilisation(work, mixed, peak=400.0, guided_peak=200.0)
    assert figures == {"utilisation": 0.5, "vs_guided_mixed": None, "generated_only": 0.25,
                       "generated_only_vs_guided_peak": 0.5}
    guided_mixed = utilisation.EngineWork(sequences=8, prompt_tokens=400, completion_tokens=100, wall_s=1.0)
    assert utilisation.utilisation(work, mixed, 400.0, 200.0, guided_mixed)["vs_guided_mixed"] == 0.8
    assert utilisation.utilisation(work, mixed, peak=0.0, guided_peak=0.0)["generated_only"] is None
