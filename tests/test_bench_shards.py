"""Sharded benches (reasonflow.bench.shards): deterministic disjoint slices, and a merge that rebuilds the
unsharded run or refuses shards that are not one run split N ways. Offline, with ScriptedLM."""

from __future__ import annotations

import json
import shutil

import pytest

from reasonflow import cli
from reasonflow.bench import main, run_bench
from reasonflow.bench.shards import Shard, ShardMergeError, merge
from reasonflow.errors import ConfigError
from reasonflow.testing import ScriptedLM
from reasonflow.trace import Trace

GOLD: dict[str, str] = {}
TIMINGS = ("latency_s",)


@pytest.fixture()
def gold(data_dir):
    from reasonflow.data import load

    GOLD.update({ex.question: ex.answer for ex in load("gsm8k", data_dir=data_dir, limit=12)})


def half_right(call):
    """Right on questions of even length, one off on the rest: deterministic per question."""
    question = call.inputs["question"]
    return {"reasoning": "worked", "answer": float(GOLD[question]) + len(question) % 2}


def bench(tmp_path, data_dir, out, programs="cot,sc@2", limit=7, **kw):
    return run_bench(programs, "gsm8k", limit=limit, data_dir=data_dir, lm=ScriptedLM(half_right),
                     out_dir=tmp_path / out, progress=False, concurrency=3, **kw)


def rows_of(path):
    rows = [json.loads(line) for line in (path / "questions.jsonl").read_text().splitlines()]
    return {(r["program"], r["id"]): {k: v for k, v in r.items() if k not in TIMINGS} for r in rows}


def sharded(tmp_path, data_dir, count=2, **kw):
    return [tmp_path / f"s{i}" for i in range(count)
            if bench(tmp_path, data_dir, f"s{i}", shard=f"{i}/{count}", **kw)]


# --- slices -----------------------------------------------------------------------------------------

def test_shards_are_disjoint_round_robin_slices_whose_union_is_everything():
    items = list(range(11))
    slices = [Shard(i, 3).select(items) for i in range(3)]
    assert slices == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(sum(slices, [])) == items
    assert Shard.parse("2/3") == Shard(2, 3) and str(Shard(2, 3)) == "2/3" and Shard.parse(None) is None


@pytest.mark.parametrize("bad", ["3/3", "-1/2", "a/b", "2", "0/0", "1/2/3", "0/5000"])
def test_bad_shard_specs_are_config_errors(bad):
    with pytest.raises(ConfigError):
        Shard.parse(bad)


def test_a_shard_runs_only_its_questions_and_keeps_their_unsharded_index(tmp_path, data_dir, gold):
    whole = bench(tmp_path, data_dir, "whole", programs="cot")
    shard = bench(tmp_path, data_dir, "s1", programs="cot", shard="1/3")
    ids = [r["id"] for r in sorted(rows_of(tmp_path / "whole").values(), key=lambda r: r["index"])]
    mine = sorted(rows_of(tmp_path / "s1").values(), key=lambda r: r["index"])
    assert [r["id"] for r in mine] == ids[1::3] and [r["index"] for r in mine] == [1, 4]
    assert shard["shard"] == {"index": 1, "count": 3, "total": 7, "ids": ids[1::3]}
    assert shard["questions"] == 2 and whole["shard"] is None
    assert "shard 1/3" in (tmp_path / "s1" / "results.md").read_text()


# --- merge ------------------------------------------------------------------------------------------

def test_merged_shards_equal_the_unsharded_run(tmp_path, data_dir, gold):
    whole = bench(tmp_path, data_dir, "whole")
    merged = merge(tmp_path / "merged", sharded(tmp_path, data_dir, 3))
    assert rows_of(tmp_path / "merged") == rows_of(tmp_path / "whole")
    for mine, theirs in zip(merged["results"], whole["results"]):
        assert 0 < mine["correct"] < mine["questions"] == 7  # the half-right script: a real mix
        for key in ("program", "questions", "correct", "accuracy", "ci95", "errors", "k", "maj@k", "pass@k",
                    "pass@1", "prompt_tokens", "completion_tokens", "lm_calls", "tokens_per_question"):
            assert mine[key] == theirs[key], key
        assert mine["session_questions"] == 7 and mine["wall_s"] > 0
    assert merged["questions"] == 7 and [m["shard"] for m in merged["merged_from"]] == ["0/3", "1/3", "2/3"]
    assert len(merged["provenance"]["shards"]) == 3
    on_disk = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert on_disk["results"] == merged["results"]
    assert "merged from 3 shards" in (tmp_path / "merged" / "results.md").read_text()
    assert (tmp_path / "merged" / "accuracy_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"
    for row in rows_of(tmp_path / "merged").values():  # every trace travelled with its row
        assert Trace.load(tmp_path / "merged" / row["trace"]).graph.graph["question"] == row["question"]
    indices = [json.loads(line)["index"] for line in (tmp_path / "merged" / "questions.jsonl").read_text().splitlines()]
    assert indices == list(range(7)) * 2  # unsharded order, program by program


def test_merge_refuses_missing_repeated_and_foreign_shards(tmp_path, data_dir, gold):
    s0, s1 = sharded(tmp_path, data_dir, 2)
    with pytest.raises(ShardMergeError, match=r"missing \[1\]"):
        merge(tmp_path / "m1", [s0])
    shutil.copytree(s0, tmp_path / "again")
    with pytest.raises(ShardMergeError, match=r"given twice \[0\]"):
        merge(tmp_path / "m2", [s0, tmp_path / "again"])
    for out, kw, what in [("other-programs", {"programs": "cot"}, "programs"),
                          ("other-options", {"options": {"temperature": 0.5}}, "program settings"),
                          ("other-offset", {"offset": 1}, "offset"), ("other-limit", {"limit": 8}, "limit")]:
        bench(tmp_path, data_dir, out, shard="1/2", **kw)
        with pytest.raises(ShardMergeError, match=what):
            merge(tmp_path / f"m-{out}", [s0, tmp_path / out])
    bench(tmp_path, data_dir, "of3", shard="1/3")
    with pytest.raises(ShardMergeError, match="shard count"):
        merge(tmp_path / "m3", [s0, tmp_path / "of3"])
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m-other-limit").exists()  # nothing half-written


def test_merge_refuses_overlapping_questions_and_shards_lacking_rows(tmp_path, data_dir, gold):
    s0, s1 = sharded(tmp_path, data_dir, 2)
    saved = json.loads((s1 / "results.json").read_text())
    saved["shard"]["ids"].append(json.loads((s0 / "results.json").read_text())["shard"]["ids"][0])
    (s1 / "results.json").write_text(json.dumps(saved))
    with pytest.raises(ShardMergeError, match="is in both"):
        merge(tmp_path / "m", [s0, s1])
    saved["shard"]["ids"].pop()
    (s1 / "results.json").write_text(json.dumps(saved))
    lines = (s1 / "questions.jsonl").read_text().splitlines()
    (s1 / "questions.jsonl").write_text("\n".join(lines[1:]) + "\n")  # a shard that lost a row
    with pytest.raises(ShardMergeError, match="--resume"):
        merge(tmp_path / "m", [s0, s1])
    (s1 / "questions.jsonl").write_text("\n".join(lines) + "\n")
    merge(tmp_path / "m", [s0, s1])  # restored: it merges
    with pytest.raises(ShardMergeError, match="already holds"):
        merge(tmp_path / "m", [s0, s1])


def test_merge_refuses_bad_paths_unfinished_and_unsharded_runs(tmp_path, data_dir, gold):
    s0, s1 = sharded(tmp_path, data_dir, 2)
    bench(tmp_path, data_dir, "whole")
    with pytest.raises(ShardMergeError, match="not a directory"):
        merge(tmp_path / "m", [s0, tmp_path / "nowhere"])
    with pytest.raises(ShardMergeError, match="not a shard"):
        merge(tmp_path / "m", [s0, tmp_path / "whole"])
    with pytest.raises(ShardMergeError, match="is one of the shards"):
        merge(s0, [s0, s1])
    with pytest.raises(ShardMergeError, match="no shard directories"):
        merge(tmp_path / "m", [])
    (s1 / "results.json").unlink()  # a shard interrupted before the end
    with pytest.raises(ShardMergeError, match="did not finish"):
        merge(tmp_path / "m", [s0, s1])
    (s1 / "results.json").write_text("{not json")
    with pytest.raises(ShardMergeError, match="cannot read"):
        merge(tmp_path / "m", [s0, s1])


def test_merge_refuses_a_trace_path_outside_its_shard(tmp_path, data_dir, gold):
    s0, s1 = sharded(tmp_path, data_dir, 2, programs="cot")
    rows = [json.loads(line) for line in (s1 / "questions.jsonl").read_text().splitlines()]
    rows[0]["trace"] = "../s0/results.json"
    (s1 / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ShardMergeError, match="leaves the shard"):
        merge(tmp_path / "m", [s0, s1])


# --- command line -----------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:coroutine .*try_connect.* was never awaited:RuntimeWarning")  # anyio
def test_shard_and_merge_from_both_command_lines(tmp_path, data_dir, gold, monkeypatch, capsys):
    lm = ScriptedLM(half_right)
    lm.base_url, lm.served_model = "http://127.0.0.1:9/v1", "scripted"  # nothing listens: no metrics
    monkeypatch.setattr("reasonflow.lm.connect", lambda base_url=None, model=None, **kw: lm)
    common = ["--dataset", "gsm8k", "--limit", "5", "--programs", "cot", "--data-dir", str(data_dir), "--quiet"]
    assert main([*common, "--shard", "0/2", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["bench", *common, "--shard", "1/2", "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert cli.main(["bench", "merge", str(tmp_path / "m"), str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "merged 2 shards (5 questions)" in capsys.readouterr().out
    saved = json.loads((tmp_path / "m" / "results.json").read_text())
    assert saved["provenance"]["command"].startswith("reasonflow bench merge")
    assert main(["merge", str(tmp_path / "m2"), str(tmp_path / "a")]) == 2  # shard 1 missing: one-line error
    assert "error:" in capsys.readouterr().err
    assert main([*common, "--shard", "2/2", "--out", str(tmp_path / "c")]) == 2
    assert main([*common, "--shards", "2", "--out", str(tmp_path / "c")]) == 2  # --shards without --ray
