"""The committed default adapter served by the real embedded engine (the session engine starts with
``--lora gsm8k-pot=programs/adapters/gsm8k-pot``) and measured by the bench with ``--model``."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from reasonflow.errors import ConfigError
from reasonflow.finetune import read_manifest
from reasonflow.lm import connect, list_models
from reasonflow.trace import Trace
from tests.conftest import DEFAULT_ADAPTER, DEFAULT_ADAPTER_DIR, REPO

pytestmark = pytest.mark.engine


def test_committed_default_adapter_is_finished_and_small():
    manifest = read_manifest(DEFAULT_ADAPTER_DIR)
    assert manifest["base_model"]["name"] == "smollm2-135m"
    assert manifest["training"]["final_loss"] < manifest["training"]["loss_first"]  # it learnt something
    assert (DEFAULT_ADAPTER_DIR / "adapter_model.safetensors").stat().st_size < 12 * 2**20  # bf16, ~10 MB


def test_engine_serves_the_adapter_as_its_own_model(engine):
    served = list_models(engine.base_url)
    assert served[0] == "smollm2-135m" and DEFAULT_ADAPTER in served
    with pytest.raises(ConfigError, match="does not serve"):
        connect(engine.base_url, "no-such-adapter")


def test_bench_measures_the_adapter_with_model(engine, data_dir, tmp_path):
    out = tmp_path / "ft"
    done = subprocess.run([sys.executable, str(REPO / "evals" / "math_bench.py"), "--dataset", "gsm8k", "--limit", "3",
                           "--programs", "pot", "--model", DEFAULT_ADAPTER, "--base-url", engine.base_url,
                           "--data-dir", str(data_dir), "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == DEFAULT_ADAPTER and results["results"][0]["questions"] == 3
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    programs = [node["text"] for row in rows for node in Trace.load(out / row["trace"]).graph.nodes.values()
                if node["depth"] == 1]
    # The adapter writes the trained format (n1 = ...; n2 = ...; answer = nK); the base model does not
    assert len(programs) == 3 and sum(bool(re.search(r"^n1 = ", p, re.M)) for p in programs) >= 2, programs
