"""The bench against the real engine: two GSM8K questions, then the script resuming that run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from reasonflow.bench import run_bench
from reasonflow.trace import Trace

from tests.conftest import REPO

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def bench_run(engine, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-engine")
    result = run_bench("cot", "gsm8k", limit=2, concurrency=2, base_url=engine.base_url, data_dir=data_dir,
                       out_dir=out, progress=False)
    return out, result


def test_real_run_outputs_exist_and_agree_with_each_other(bench_run):
    out, result = bench_run
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["gsm8k:test:0", "gsm8k:test:1"]
    (cot,) = json.loads((out / "results.json").read_text())["results"]
    assert cot["program"] == "gsm8k.cot" and cot["questions"] == 2
    assert cot["correct"] == sum(r["correct"] for r in rows)
    assert cot["completion_tokens"] == sum(r["completion_tokens"] for r in rows) > 0
    assert cot["lm_calls"] == sum(r["lm_calls"] for r in rows) >= 2
    assert sum(cot["errors"].values()) == sum(r["error"] is not None for r in rows)
    for r in rows:
        if r["trace"]:
            assert Trace.load(out / r["trace"]).graph.graph["question"] == r["question"]
    assert (out / "accuracy_vs_tokens.png").stat().st_size > 0
    assert result["table"] in (out / "results.md").read_text()


def test_real_run_measures_utilisation_and_the_prefix_cache(bench_run):
    _, result = bench_run
    cot = result["results"][0]
    assert result["peak"]["concurrency"] == 2 and result["peak"]["tok_s"] > 0
    assert cot["completion_tok_s"] > 0 and cot["utilisation"] > 0
    ratio = cot["completion_tok_s"] / result["peak"]["tok_s"]  # both rounded to 0.01 in results.json
    assert cot["utilisation"] == pytest.approx(ratio, rel=0.02)
    assert cot["prefix_cache_hit_rate"] is not None and 0.0 <= cot["prefix_cache_hit_rate"] <= 1.0


def test_the_script_resumes_a_finished_run_without_asking_again(bench_run, engine, data_dir):
    out, _ = bench_run
    before = (out / "questions.jsonl").read_text()
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # `programs` is a top-level package of the repo
    done = subprocess.run([sys.executable, "evals/math_bench.py", "--dataset", "gsm8k", "--limit", "2",
                           "--programs", "cot", "--concurrency", "2", "--base-url", engine.base_url,
                           "--data-dir", str(data_dir), "--out", str(out), "--resume", "--quiet"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| gsm8k.cot | gsm8k | 2 |" in done.stdout
    assert (out / "questions.jsonl").read_text() == before
    (cot,) = json.loads((out / "results.json").read_text())["results"]
    assert cot["session_questions"] == 0 and cot["utilisation"] is None
