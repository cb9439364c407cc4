"""Integration tests against the real embedded vLLM engine (marker ``engine``)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil

import dspy
import httpx
import pytest

import reasonflow
from reasonflow import StructuredAdapter, track_usage
from reasonflow.data import load
from reasonflow.engine import Engine, model as model_mod
from reasonflow.errors import EngineStartError
from tests.conftest import base_url_of, cli

pytestmark = pytest.mark.engine


def metrics(base_url: str) -> dict[str, float]:
    text = httpx.get(base_url.removesuffix("/v1") + "/metrics", timeout=10).text
    totals: dict[str, float] = {}
    for name in ("vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total"):
        totals[name] = sum(float(m) for m in re.findall(rf"^{re.escape(name)}{{[^}}]*}} (\S+)$", text, re.M))
    return totals


def test_cli_up_reuses_status_reports_and_down_stops(engine):
    if engine.external:
        pytest.skip("REASONFLOW_TEST_BASE_URL points at an engine this session does not own")
    first = engine.base_url
    again = cli("engine", "up", home=engine.home)
    assert again.returncode == 0 and "reusing" in again.stderr
    assert base_url_of(again.stdout) == first
    status = cli("engine", "status", home=engine.home)
    assert status.returncode == 0 and base_url_of(status.stdout) == first

    assert engine.down().returncode == 0
    down = cli("engine", "status", home=engine.home)
    assert down.returncode == 1 and down.stdout.startswith("down")
    with pytest.raises(httpx.HTTPError):
        httpx.get(first.removesuffix("/v1") + "/health", timeout=5)

    engine.up()  # the rest of the session keeps an engine
    assert "started" in engine.up_output
    assert reasonflow.engine.is_ready(engine.base_url)


def test_guided_json_parses_every_answer(engine, data_dir):
    lm = reasonflow.connect(engine.base_url, max_tokens=384)
    program = dspy.ChainOfThought("question -> answer: float")
    questions = load("gsm8k", data_dir=data_dir, limit=8)

    async def solve_all():
        with dspy.context(lm=lm, adapter=StructuredAdapter()):
            return await asyncio.gather(*(program.acall(question=ex.question) for ex in questions))

    with track_usage() as usage:
        preds = asyncio.run(solve_all())
    assert all(isinstance(p.answer, float) for p in preds)
    assert usage.parse_failures == 0 and usage.truncated == 0 and usage.calls == 8


def test_n8_is_one_request_with_eight_distinct_samples(engine):
    lm = reasonflow.connect(engine.base_url, max_tokens=160, temperature=1.0)
    before = metrics(engine.base_url)
    with dspy.context(lm=lm, adapter=StructuredAdapter()), track_usage() as usage:
        pred = dspy.ChainOfThought("question -> answer: float", n=8)(question="What is 17 times 3?")
    after = metrics(engine.base_url)
    (rec,) = usage.records
    assert rec.n == 8 and len(rec.finish_reasons) == 8
    samples = {json.dumps([c.reasoning, c.answer]) for c in pred.completions}
    assert len(samples) == len(pred.completions) == 8
    # vLLM counts the same tokens we recorded for that single request.
    assert after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"] == rec.completion_tokens


def test_usage_matches_vllm_metrics(engine):
    lm = reasonflow.connect(engine.base_url, max_tokens=64)
    before = metrics(engine.base_url)
    with dspy.context(lm=lm, adapter=StructuredAdapter()), track_usage() as usage:
        dspy.Predict("question -> answer: str")(question="Name a colour.")
    after = metrics(engine.base_url)
    (rec,) = usage.records
    assert rec.prompt_tokens == after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"]
    assert rec.completion_tokens == after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"]
    assert rec.prompt_tokens > 50 and rec.completion_tokens > 0 and rec.latency_s > 0


def test_dead_engine_raises_typed_error_with_log_tail(tmp_path, monkeypatch):
    bogus = tmp_path / "bogus-model"
    bogus.mkdir()
    (bogus / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    monkeypatch.setenv("REASONFLOW_HOME", str(tmp_path / "home"))
    with pytest.raises(EngineStartError) as info:
        Engine(model=str(bogus), start_timeout_s=300).start()
    err = info.value
    assert "exited before it was ready" in str(err)
    assert err.log_tail and err.log_tail in str(err)
    assert "no-such-architecture" in err.log_tail or "Error" in err.log_tail


def test_corrupted_model_cache_is_rebuilt(tmp_path, monkeypatch, engine_home):
    shared_models = engine_home / "models"
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "downloads").symlink_to(engine_home / "downloads")
    target = home / "models" / "smollm2-135m"
    shutil.copytree(shared_models / "smollm2-135m", target)
    monkeypatch.setenv("REASONFLOW_HOME", str(home))
    assert model_mod.is_valid(target)

    weights = target / "model.safetensors"
    good_hash = model_mod.sha256_file(weights)
    with open(weights, "r+b") as fh:  # a half-written file
        fh.truncate(weights.stat().st_size // 2)
    assert not model_mod.is_valid(target)

    rebuilt = model_mod.ensure_model("smollm2-135m")
    assert rebuilt == target and model_mod.is_valid(target)
    assert model_mod.sha256_file(weights) == good_hash
