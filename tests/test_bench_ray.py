"""The bench's shards as Ray tasks (reasonflow.bench.cluster) on a local Ray cluster started here, against
tests/fakeserver's OpenAI-compatible stub (deterministic answers at temperature 0): the same rows and the
same accuracy as one process. Skipped without the ray extra (``pip install 'reasonflow[ray]'``)."""

from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray")

from reasonflow.bench import main, run_bench  # noqa: E402
from reasonflow.bench.cluster import run_ray  # noqa: E402
from reasonflow.errors import ConfigError, DatasetError  # noqa: E402
from tests.fakeserver import FakeServer, completion  # noqa: E402

TIMINGS = ("latency_s",)
COUNTS = ("questions", "correct", "accuracy", "ci95", "errors", "prompt_tokens", "completion_tokens", "lm_calls")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 ** 2, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture()
def stub(data_dir):
    """The stub answers each question's gold, off by one on questions of odd length (a real mix)."""
    from reasonflow.data import load

    gold = {ex.question: float(ex.answer) for ex in load("gsm8k", data_dir=data_dir, limit=6)}

    def answer(body):
        text = "\n".join(str(m.get("content")) for m in body["messages"] if m.get("role") == "user")
        question = next((q for q in gold if q in text), None)  # None: the bench's peak-throughput probe
        value = gold[question] + len(question) % 2 if question else 0
        return completion(json.dumps({"reasoning": "worked it out", "answer": value}), prompt_tokens=20)

    with FakeServer([answer]) as server:
        yield server


def rows_of(path):
    rows = [json.loads(line) for line in (path / "questions.jsonl").read_text().splitlines()]
    return {(r["program"], r["id"]): {k: v for k, v in r.items() if k not in TIMINGS} for r in rows}


@pytest.mark.timeout(180)
def test_a_two_shard_ray_bench_gives_the_rows_and_accuracy_of_one_process(tmp_path, data_dir, cluster, stub):
    settings = dict(limit=6, data_dir=data_dir, base_url=stub.base_url, concurrency=3)
    single = run_bench("cot", "gsm8k", out_dir=tmp_path / "one", progress=False, **settings)
    merged = run_ray("cot", "gsm8k", shards=2, out_dir=tmp_path / "ray", progress=False, **settings)
    assert rows_of(tmp_path / "ray") == rows_of(tmp_path / "one")
    (mine,), (theirs,) = merged["results"], single["results"]
    assert 0 < mine["correct"] < mine["questions"] == 6
    assert {k: mine[k] for k in COUNTS} == {k: theirs[k] for k in COUNTS}
    on_disk = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert on_disk["questions"] == 6 and [m["shard"] for m in on_disk["merged_from"]] == ["0/2", "1/2"]
    for i in range(2):  # each task's own outputs are kept beside the merge
        shard = json.loads((tmp_path / "ray" / "shards" / f"shard-{i}-of-2" / "results.json").read_text())
        assert shard["shard"]["index"] == i and len(shard["shard"]["ids"]) == 3
        assert shard["provenance"]["command"].endswith(f"--shard {i}/2")


@pytest.mark.timeout(120)
def test_ray_from_the_command_line_and_its_refusals(tmp_path, data_dir, cluster, stub, capsys):
    common = ["--dataset", "gsm8k", "--limit", "4", "--programs", "cot", "--data-dir", str(data_dir), "--quiet",
              "--base-url", stub.base_url]
    assert main([*common, "--ray", "--shards", "2", "--out", str(tmp_path / "x")]) == 0
    assert "| gsm8k.cot | gsm8k | 4 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "x" / "results.json").read_text())["results"][0]["questions"] == 4
    for extra in (["--ray"], ["--ray", "--shards", "2", "--shard", "0/2"], ["--ray", "--shards", "2", "--resume"],
                  ["--ray", "--shards", "0"], ["--ray", "--shards", "2", "--programs", "nosuch"]):
        assert main([*common, *extra, "--out", str(tmp_path / "y")]) == 2, extra
    assert main([*common, "--ray", "--shards", "2", "--out", str(tmp_path / "x")]) == 2  # results exist
    with pytest.raises(ConfigError, match="resume"):
        run_ray("cot", "gsm8k", shards=2, out_dir=tmp_path / "z", resume=True)
    with pytest.raises(DatasetError):  # raised inside the tasks (no such data on the workers), raised as itself
        run_ray("cot", "gsm8k", shards=2, out_dir=tmp_path / "z", base_url=stub.base_url, limit=2,
                data_dir=tmp_path / "no-data", progress=False)
    assert not (tmp_path / "z" / "results.json").exists()
