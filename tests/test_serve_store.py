"""The directory trace store (reasonflow.serve.store.DirectoryTraceStore, ``serve --trace-dir``): atomic
files, bounded like the memory store, validated reads, and two real ``reasonflow serve`` processes that
answer ``GET /v1/traces/{id}`` for each other's runs."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from reasonflow.errors import ConfigError
from reasonflow.serve.store import STALE_TEMP_S, DirectoryTraceStore, TraceStore, open_store
from reasonflow.serve.testing import free_port
from reasonflow.trace import Trace
from tests import serveproc
from tests.fakeserver import FakeServer, completion



def trace(question: str) -> Trace:
    t = Trace(program="gsm8k.cot", strategy="cot", question=question)
    root = t.add_node(question)
    t.add_node("step", parent=root)
    return t


def test_a_trace_put_by_one_store_is_read_whole_by_another_on_the_same_directory(tmp_path):
    a, b = DirectoryTraceStore(tmp_path / "traces", 8), DirectoryTraceStore(tmp_path / "traces", 8)
    original = trace("what is 2 + 3?")
    trace_id = a.put(original)
    assert len(trace_id) == 32 and int(trace_id, 16) >= 0 and trace_id in b
    got = b.get(trace_id)
    assert got is not original and got.to_dict() == original.to_dict()
    assert sorted(p.name for p in (tmp_path / "traces").iterdir()) == [f"{trace_id}.json"]  # no temp file left
    assert len({a.put(trace(str(i))) for i in range(20)}) == 20  # fresh random ids


def test_the_directory_keeps_only_the_newest_traces_across_stores(tmp_path):
    a, b = DirectoryTraceStore(tmp_path, 3), DirectoryTraceStore(tmp_path, 3)
    ids = [(a if i % 2 else b).put(trace(f"q{i}")) for i in range(5)]  # puts within a millisecond of each other
    assert [t in a for t in ids] == [False, False, True, True, True]
    assert [b.get(t).graph.graph["question"] if t in b else None for t in ids] == [None, None, "q2", "q3", "q4"]
    assert len(a) == len(b) == 3


def test_puts_at_one_clock_reading_still_drop_the_oldest_first(tmp_path, monkeypatch):
    """File systems stamp modification times coarsely; the store orders its own puts to the nanosecond."""
    import reasonflow.serve.store as store_module

    monkeypatch.setattr(store_module.time, "time_ns", lambda: 1_700_000_000 * 10 ** 9)  # a frozen clock
    store = DirectoryTraceStore(tmp_path, 2)
    ids = [store.put(trace(f"q{i}")) for i in range(6)]
    assert [t in store for t in ids] == [False] * 4 + [True] * 2


def test_only_trace_ids_become_file_names(tmp_path):
    store = DirectoryTraceStore(tmp_path / "traces", 4)
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(trace("private").to_dict()))
    for bad in ("../secret", "../secret.json", "A" * 32, "a" * 31, "a" * 33, None, 7):
        assert store.get(bad) is None and bad not in store
    (tmp_path / "traces" / "notes.json").write_text("{}")  # not a trace id: never counted, never dropped
    for i in range(6):
        store.put(trace(str(i)))
    assert len(store) == 4 and (tmp_path / "traces" / "notes.json").is_file()


def test_corrupt_or_truncated_files_are_answered_as_missing(tmp_path, caplog):
    store = DirectoryTraceStore(tmp_path, 4)
    good = store.put(trace("q"))
    text = (tmp_path / f"{good}.json").read_text()
    (tmp_path / f"{good}.json").write_text(text[: len(text) // 2])
    broken = store.put(trace("r"))
    (tmp_path / f"{broken}.json").write_text(json.dumps({"format": "something else"}))
    assert store.get(good) is None and store.get(broken) is None
    assert "unreadable" in caplog.text


def test_stale_temporary_files_of_crashed_writers_are_removed(tmp_path):
    store = DirectoryTraceStore(tmp_path, 4)
    stale, fresh = tmp_path / ".x.json.123.tmp", tmp_path / ".y.json.124.tmp"
    for path in (stale, fresh):
        path.write_text("{")
    old = time.time() - STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    store.put(trace("q"))
    assert not stale.exists() and fresh.exists()  # a fresh one may belong to a writer at work


def test_bad_directories_and_capacities_are_config_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(ConfigError, match="trace-dir"):
            DirectoryTraceStore(bad, 4)
    with pytest.raises(ConfigError):
        DirectoryTraceStore(tmp_path / "d", 0)
    assert isinstance(open_store(4), TraceStore) and isinstance(open_store(4, tmp_path / "d"), DirectoryTraceStore)


# --- two real servers ----------------------------------------------------------------------------

ANSWER = completion(json.dumps({"reasoning": "48/2=24, 48+24=72", "answer": 72}), prompt_tokens=20)


def start_serve(port: int, stub_url: str, trace_dir: Path) -> subprocess.Popen:
    return serveproc.serve("gsm8k.cot", "--base-url", stub_url, "--port", str(port), "--trace-dir", str(trace_dir),
                           "--log-level", "warning", LITELLM_LOCAL_MODEL_COST_MAP="True", REASONFLOW_SERVE_API_KEY=None)


@pytest.mark.timeout(240)
def test_two_serve_processes_with_one_trace_dir_answer_for_each_other(tmp_path):
    with FakeServer([ANSWER]) as stub:
        ports = [free_port(), free_port()]
        procs = [start_serve(port, stub.base_url, tmp_path / "traces") for port in ports]
        a, b = (f"http://127.0.0.1:{port}" for port in ports)
        try:
            for proc, url in zip(procs, (a, b)):
                serveproc.wait_ready(proc, url, timeout_s=120)
            on_a = httpx.post(f"{a}/v1/solve", json={"question": "Natalia sold 48 clips..."}, timeout=60).json()
            on_b = httpx.post(f"{b}/v1/solve", json={"question": "Another question"}, timeout=60).json()
            assert on_a["answer"] == 72 and on_a["trace_id"] != on_b["trace_id"]
            from_b = httpx.get(f"{b}/v1/traces/{on_a['trace_id']}", timeout=30)
            from_a = httpx.get(f"{a}/v1/traces/{on_b['trace_id']}", timeout=30)
            assert from_b.status_code == 200 and from_b.json() == on_a["trace"]
            assert from_a.status_code == 200 and from_a.json()["graph"]["question"] == "Another question"
            assert httpx.get(f"{b}/v1/traces/{on_a['trace_id']}?format=html", timeout=30).status_code == 200
            assert httpx.get(f"{b}/v1/traces/{'0' * 32}", timeout=30).status_code == 404
            assert sorted(p.name for p in (tmp_path / "traces").iterdir()) == sorted(
                f"{t}.json" for t in (on_a["trace_id"], on_b["trace_id"]))
        finally:
            serveproc.stop(*procs)
