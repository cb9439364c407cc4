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


def test_compiling_game24_tot_bootstraps_propose_and_value_demos_from_train_row_searches(tmp_path, data_dir):
    from fractions import Fraction

    from reasonflow.checking.game24 import good_moves, legal_moves, reachable

    def numbers(call):
        return tuple(sorted(Fraction(x) for x in call.inputs["numbers"].split()))

    def script(call):  # proposes moves that stay on a path to 24 and values states exactly
        if "verdict" in call.system:
            return {"trials": "", "verdict": "sure" if reachable(numbers(call)) else "impossible"}
        moves = good_moves(numbers(call)) or [move for move, _ in legal_moves(numbers(call))]
        return [{"next_step": moves[i % len(moves)]} for i in range(call.n)]

    out = tmp_path / "game24-tot.json"
    manifest = compile_program("game24.tot", dataset="game24", optimizer="bootstrap", train=4, dev=2, out=str(out),
                               data_dir=str(data_dir), lm=ScriptedLM(script), threads=1, grid=False)
    rows = [int(i.rsplit(":", 1)[1]) for i in manifest["train_ids"] + manifest["dev_ids"]]
    assert all(i.startswith("game24:train:") for i in manifest["train_ids"]) and max(rows) < 900
    assert manifest["dev_after"]["accuracy"] == 1.0
    compiled = reasonflow.load(str(out))
    propose, value = compiled.propose.demos, compiled.value.demos
    assert propose and value
    for demo in propose:  # every demo is a legal move of its own state, taken from a solved search
        state = tuple(sorted(Fraction(x) for x in demo["numbers"].split()))
        assert demo["next_step"] in dict(legal_moves(state))
    assert {d["verdict"] for d in value} <= {"sure", "likely", "impossible"}
    assert {k for d in value for k in d.keys()} <= {"numbers", "trials", "verdict", "augmented"}  # no logprobs copied in
    assert compiled.vote.demos == []  # before: raw train puzzles, which fit neither of its inputs


def test_pruned_demos_keep_only_signature_fields_and_drop_the_ones_that_do_not_fit():
    from reasonflow.compile import prune_demos

    program = reasonflow.program("game24.tot")
    program.value.demos = [dspy.Example(numbers="4 6", verdict="sure", augmented=True, logprobs={"content": []})]
    program.vote.demos = [dspy.Example(question="1 2 3 4", answer="24", id="game24:train:0")]
    program.propose.demos = [dspy.Example(numbers="1 2 3 4")]  # no output at all
    prune_demos(program)
    assert [dict(d.items()) for d in program.value.demos] == [{"numbers": "4 6", "verdict": "sure", "augmented": True}]
    assert program.vote.demos == [] and program.propose.demos == []


# --- issue #13, point 6: an artifact restores prompts and demos only ----------------------------------

def _tampered(tmp_path, change) -> str:
    path = compiled_sc(tmp_path)
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))
    return str(path)


@pytest.mark.parametrize("attack", ["config", "lm", "other", "traces", "unknown_predictor", "signature_extra",
                                    "demo_object"])
def test_a_state_that_sets_anything_but_prompts_and_demos_is_refused(tmp_path, attack):
    lm_state = {"model": "openai/evil", "api_base": "http://203.0.113.9/v1", "temperature": 2.0, "max_tokens": 100000}
    changes = {
        "config": lambda p: p["state"]["solve.predict"].update(config={"n": 64, "max_tokens": 100000}),
        "lm": lambda p: p["state"]["solve.predict"].update(lm=lm_state),
        "other": lambda p: p["state"]["solve.predict"].update(stage="x"),
        "traces": lambda p: p["state"]["solve.predict"].update(traces=[{"a": 1}]),
        "unknown_predictor": lambda p: p["state"].update(other={"demos": []}),
        "signature_extra": lambda p: p["state"]["solve.predict"]["signature"].update(kwargs={"n": 64}),
        "demo_object": lambda p: p["state"]["solve.predict"]["demos"].append({"q": {"nested": [1]}}),
    }
    path = _tampered(tmp_path, changes[attack])
    with pytest.raises(ArtifactError):  # before: config and lm were set on the predictor as written
        reasonflow.load(path)


def test_a_crafted_state_cannot_reach_the_lm_past_the_servers_bounds(tmp_path):
    from reasonflow.serve import create_app

    path = _tampered(tmp_path, lambda p: p["state"]["solve.predict"].update(config={"n": 64, "max_tokens": 100000}))
    lm = ScriptedLM(lambda call: {"reasoning": "r", "answer": 1})
    with pytest.raises(ArtifactError, match="prompts and demos only"):
        create_app([path], lm=lm)
    assert lm.calls == []


@pytest.mark.parametrize("options, error", [({"k": 65}, "ConfigError"), ({"temperature": 9.0}, "ConfigError"),
                                            ({"max_tokens": 100000}, "ArtifactError"), ({"lm": "x"}, "ArtifactError")])
def test_the_manifests_options_are_bounded_like_a_requests(tmp_path, options, error):
    from reasonflow.errors import ConfigError

    path = _tampered(tmp_path, lambda p: p["manifest"].update(options=options))
    with pytest.raises(ConfigError if error == "ConfigError" else ArtifactError):
        reasonflow.load(path)


def test_a_clean_artifact_still_restores_its_instructions_and_demos(tmp_path):
    program = reasonflow.program("gsm8k.sc@3")
    program.solve.predict.signature = program.solve.predict.signature.with_instructions("Be brief.")
    program.solve.predict.demos = [dspy.Example(question="1+1?", reasoning="1+1=2", answer=2.0)]
    path = artifact.save(program, tmp_path / "sc.json", manifest={"program": "gsm8k.sc", "options": {"k": 3}})
    loaded = reasonflow.load(str(path))
    assert loaded.solve.predict.signature.instructions == "Be brief."
    assert loaded.solve.predict.demos[0]["reasoning"] == "1+1=2" and loaded.solve.predict.lm is None
    committed = reasonflow.load(str(artifact.Path(__file__).resolve().parents[1] / "programs/compiled/gsm8k-cot.json"))
    assert len(committed.solve.predict.demos) == 4


# --- issue #13, point 8: every malformed artifact or trace is an ArtifactError ------------------------

DEEP = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]


@pytest.mark.parametrize("case", ["no_program", "version_true", "program_not_text", "options_list", "deep_state"])
def test_malformed_artifacts_are_artifact_errors(tmp_path, case):
    changes = {  # each on an otherwise loadable artifact
        "no_program": lambda p: p["manifest"].pop("program"),
        "version_true": lambda p: p.update(version=True),
        "program_not_text": lambda p: p["manifest"].update(program=["gsm8k.sc"]),
        "options_list": lambda p: p["manifest"].update(options=[1]),
        "deep_state": lambda p: p["state"]["solve.predict"]["demos"].append({"x": DEEP}),
    }
    path = _tampered(tmp_path, changes[case])
    with pytest.raises(ArtifactError):  # before: KeyError, accepted, TypeError, ...
        reasonflow.load(path)


def test_json_nested_200k_deep_is_an_artifact_error(tmp_path):
    bad = tmp_path / "deep.json"
    bad.write_text('{"format": "reasonflow.compiled", "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(ArtifactError, match="deep"):  # before: RecursionError
        reasonflow.load(str(bad))


def test_a_trace_attribute_nested_500_deep_is_an_artifact_error(tmp_path):
    from reasonflow.trace import Trace

    trace = Trace(program="p", strategy="s", question="q")
    trace.add_node(text="x", status="answer")
    doc = trace.to_dict()
    deep: object = "x"
    for _ in range(500):
        deep = [deep]
    doc["nodes"][0]["extra"] = deep
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="deep"):  # before: RecursionError
        Trace.load(path)
    with pytest.raises(ArtifactError, match="deep"):
        Trace.from_dict(doc)
    assert issubclass(ArtifactError, reasonflow.ReasonflowError)
