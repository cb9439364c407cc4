"""Compiled artifacts: JSON only, load from any directory, refuse pickles and garbage."""

import json
import os
import pickle

import dspy
import pytest

import reasonflow
from reasonflow import artifact
from reasonflow.compile import Point, choose, compile_program, pareto
from reasonflow.errors import ArtifactError
from reasonflow.testing import ScriptedLM


def compiled_sc(tmp_path):
    program = reasonflow.program("gsm8k.sc@3")
    program.solve.predict.demos = [dspy.Example(question="1+1?", reasoning="1+1=2", answer=2.0)]
    path = artifact.save(program, tmp_path / "sc.json", manifest={"program": "gsm8k.sc", "options": {"k": 3}})
    return path


def test_artifact_loads_from_another_working_directory(tmp_path, monkeypatch):
    path = compiled_sc(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = reasonflow.load(str(path))
    assert loaded.k == 3 and loaded.manifest["program"] == "gsm8k.sc"
    assert loaded.solve.predict.demos[0]["answer"] == 2.0
    assert reasonflow.program(str(path)).k == 3  # the registry takes artifact paths too


def test_pickle_is_refused_whatever_its_name(tmp_path):
    for name in ("prog.pkl", "prog.json"):
        bad = tmp_path / name
        bad.write_bytes(pickle.dumps({"format": "reasonflow.compiled"}))
        with pytest.raises(ArtifactError, match="pickle"):
            reasonflow.load(str(bad))


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": "other"}),
                                     json.dumps({"format": "reasonflow.compiled", "version": 99, "manifest": {}, "state": {}})])
def test_garbage_and_foreign_files_are_refused(tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(ArtifactError):
        reasonflow.load(str(bad))


def test_state_that_does_not_fit_the_program_is_refused(tmp_path):
    path = compiled_sc(tmp_path)
    payload = json.loads(path.read_text())
    payload["manifest"]["program"] = "game24.tot"
    path.write_text(json.dumps(payload))
    with pytest.raises(ArtifactError, match="does not fit"):
        reasonflow.load(str(path))


def test_choice_rule_and_pareto_front():
    a, b, c = Point({"k": 1}, 0.2, 100), Point({"k": 4}, 0.3, 400), Point({"k": 8}, 0.3, 800)
    assert choose([a, b, c], None) == b  # same accuracy: fewer tokens
    assert choose([a, b, c], 200) == a
    assert pareto([a, b, c]) == [a, b]


def test_compile_bootstrap_round_trip_offline(tmp_path, data_dir, monkeypatch):
    def script(call):  # answers with the gold number for training questions
        return {"reasoning": "add", "answer": 5.0 if "5" in call.inputs.get("question", "") else 1.0}

    out = tmp_path / "compiled.json"
    manifest = compile_program("gsm8k.cot", dataset="gsm8k", optimizer="bootstrap", train=4, dev=3, out=str(out),
                               data_dir=str(data_dir), lm=ScriptedLM(script), threads=1)
    assert manifest["split"] == "train" and len(manifest["train_ids"]) == 4 and len(manifest["dev_ids"]) == 3
    assert not set(manifest["train_ids"]) & set(manifest["dev_ids"])
    assert all(i.startswith("gsm8k:train:") for i in manifest["train_ids"] + manifest["dev_ids"])
    assert 0.0 <= manifest["dev_after"]["accuracy"] <= 1.0
    monkeypatch.chdir(tmp_path)
    assert isinstance(reasonflow.load(os.path.basename(out)), dspy.Module)
