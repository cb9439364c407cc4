"""Replicas from the command line and a real replica process stopped mid-bench (issue #17).

The offline tests run stand-in replicas (``tests/standin_replica.py``: a scripted OpenAI-compatible
server in a process of its own) through the real ``Engine`` and ``engine up|status|down`` code paths,
with only the vLLM command and the model lookup replaced, as ``tests/test_engine_lifetime.py`` does.
The ``engine``-marked test starts two tiny real vLLM replicas (one core each) and is sized for two
cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reasonflow import cli, track_usage
from reasonflow.bench import run_bench
from reasonflow.config import EngineConfig, LMConfig
from reasonflow.engine import server, state
from reasonflow.engine.server import free_port
from reasonflow.errors import ConfigError
from reasonflow.lm import VLLMLM, connect
from tests.conftest import alive as _alive

REPO = Path(__file__).resolve().parents[1]
STANDIN = REPO / "tests" / "standin_replica.py"
DATA = os.environ.get("REASONFLOW_DATA_DIR", str(REPO.parent / "shared" / "data"))
CORES = sorted(os.sched_getaffinity(0))


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if b"=" in item)


@pytest.fixture
def standin_engine(tmp_path, monkeypatch):
    """``engine up`` launches stand-in replicas; the real vLLM command each would get is recorded."""
    monkeypatch.setenv("REASONFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REASONFLOW_BASE_URL", raising=False)
    monkeypatch.setattr(server, "resolve_model", lambda model: (Path("/tmp"), "standin"))
    commands = []
    real_command = server.Engine.command

    def command(self):
        commands.append(real_command(self))
        return [sys.executable, str(STANDIN), str(self.port), "0.05", "standin"]

    monkeypatch.setattr(server.Engine, "command", command)
    yield commands
    left = state.read_state()
    if left is not None:
        for member in left.members():
            try:
                os.killpg(member.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def test_cpu_shares_split_the_usable_cores_contiguously_and_evenly(monkeypatch):
    monkeypatch.setattr(state.os, "sched_getaffinity", lambda pid: {4, 0, 1, 2, 3})
    assert state.cpu_shares(2) == [(0, 1, 2), (3, 4)]
    assert state.cpu_shares(5) == [(0,), (1,), (2,), (3,), (4,)]
    for bad in (0, 6, -1):
        with pytest.raises(ConfigError, match="replicas"):
            state.cpu_shares(bad)


def test_a_bound_engine_gets_one_omp_thread_per_core_and_vllms_binding():
    env = server.Engine(config=EngineConfig(cpus=(2, 3))).environment()
    assert env["OMP_NUM_THREADS"] == "2" and env["VLLM_CPU_OMP_THREADS_BIND"] == "2,3"
    unbound = server.Engine(config=EngineConfig(omp_threads=2)).environment()
    assert unbound["OMP_NUM_THREADS"] == "2" and unbound.get("VLLM_CPU_OMP_THREADS_BIND") in (None, os.environ.get(
        "VLLM_CPU_OMP_THREADS_BIND"))
    with pytest.raises(ConfigError):
        EngineConfig(cpus=(-1,))


@pytest.mark.skipif(len(CORES) < 2, reason="two replicas need two usable cores")
def test_engine_up_replicas_binds_each_to_its_share_status_shows_them_and_down_stops_all(standin_engine, capsys):
    assert cli.main(["engine", "up", "--replicas", "2", "--timeout", "60", "--",
                     "--data-parallel-size", "1", "--max-num-seqs", "8"]) == 0
    base_url = capsys.readouterr().out.strip().removeprefix("base_url: ")
    up = state.read_state()
    members = up.members()
    assert len(members) == 2 and base_url == up.base_url == ",".join(m.base_url for m in members)
    shares = state.cpu_shares(2)
    for member, share in zip(members, shares):
        assert member.cpus == share and os.sched_getaffinity(member.pid) == set(share)
        env = _environ(member.pid)
        assert env["OMP_NUM_THREADS"] == str(len(share))
        assert env["VLLM_CPU_OMP_THREADS_BIND"] == ",".join(map(str, share))
    assert len(standin_engine) == 2
    assert all(cmd[-4:] == ["--data-parallel-size", "1", "--max-num-seqs", "8"] for cmd in standin_engine)

    assert cli.main(["engine", "status"]) == 0
    out = capsys.readouterr().out
    assert "replicas 2/2 answering" in out
    for i, (member, share) in enumerate(zip(members, shares)):
        assert f"replica {i}: up pid {member.pid} cpus {','.join(map(str, share))} {member.base_url}" in out

    lm = connect()  # no base URL: the detached engine, both replicas
    assert lm.base_urls == tuple(m.base_url for m in members) and lm.served_model == "standin"
    assert cli.main(["engine", "up", "--replicas", "2"]) == 0  # reused, not restarted
    assert state.read_state().members() == members
    assert cli.main(["engine", "up"]) == 2  # a different replica count is refused, not silently reused
    assert "engine down" in capsys.readouterr().err

    os.killpg(members[1].pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(members[1].pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cli.main(["engine", "status"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("degraded") and f"replica 1: down pid {members[1].pid}" in out

    assert cli.main(["engine", "down"]) == 0
    deadline = time.monotonic() + 30
    while _alive(members[0].pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(m.pid) for m in members) and state.read_state() is None


def test_replicas_and_vllm_arguments_belong_to_engine_up(capsys):
    assert cli.main(["engine", "status", "--replicas", "2"]) == 2
    assert cli.main(["engine", "down", "--", "--data-parallel-size", "2"]) == 2
    assert "engine up" in capsys.readouterr().err


def test_one_replica_failing_to_start_leaves_none_running(standin_engine, monkeypatch):
    if len(CORES) < 2:
        pytest.skip("two replicas need two usable cores")
    started = []
    real_launch = server.Engine.launch

    def launch(self):
        real_launch(self)
        started.append(self.pid)
        return self

    def wait_ready(self):
        if self.pid == started[-1]:
            raise server.EngineStartError("stand-in failure")

    monkeypatch.setattr(server.Engine, "launch", launch)
    monkeypatch.setattr(server.Engine, "wait_ready", wait_ready)
    with pytest.raises(server.EngineStartError):
        state.up(replicas=2)
    time.sleep(0.5)
    assert len(started) == 2 and not any(_alive(pid) for pid in started) and state.read_state() is None


def _replica(port: int, delay_s: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(STANDIN), str(port), str(delay_s)], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_killing_one_of_two_replica_processes_mid_bench_loses_no_question(tmp_path):
    ports = [free_port(), free_port()]
    procs = [_replica(port, 0.15) for port in ports]
    urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
    try:
        lm = VLLMLM(urls, "fake", config=LMConfig(timeout_s=10, max_retries=2))

        def kill_when_it_has_answered():  # mid-bench: it has answered two questions, others are in flight
            deadline = time.monotonic() + 60
            while lm.pool.stats()[0]["calls"] < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            procs[0].kill()

        killer = threading.Thread(target=kill_when_it_has_answered)
        killer.start()
        with track_usage() as usage:
            results = run_bench(["cot"], "gsm8k", limit=24, lm=lm, concurrency=4, data_dir=DATA,
                                out_dir=tmp_path / "bench", progress=False)
        killer.join()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    (summary,) = results["results"]
    assert summary["questions"] == 24 and summary["errors"] == {} and summary["lm_calls"] == 24
    assert usage.calls == len(usage.records) == 24 and usage.errors == 0
    assert usage.prompt_tokens == sum(r.prompt_tokens for r in usage.records) == summary["prompt_tokens"]
    killed, kept = (usage.replicas[url] for url in urls)
    assert killed["calls"] >= 1 and killed["failed_attempts"] >= 1  # it answered, then it failed some
    assert killed["calls"] + kept["calls"] == 24
    assert not lm.pool.stats()[0]["up"]


# --- the real engine: two tiny replicas, one core each (not run offline) ----------------------------------

@pytest.mark.engine
@pytest.mark.timeout(1800)
@pytest.mark.skipif(len(CORES) < 2, reason="two replicas need two usable cores")
def test_two_real_replicas_answer_one_lm_and_survive_losing_one(tmp_path, monkeypatch, sole_engine):
    from tests.test_engine_lifetime import _private_home

    monkeypatch.setenv("REASONFLOW_HOME", str(_private_home(tmp_path)))
    monkeypatch.delenv("REASONFLOW_BASE_URL", raising=False)
    try:
        up, _ = state.up(EngineConfig(kvcache_gib=1, max_model_len=2048), replicas=2)
        members = up.members()
        assert [m.cpus for m in members] == state.cpu_shares(2)
        lm = connect(up.base_url, config=LMConfig(timeout_s=120, max_retries=2))
        with track_usage() as usage:
            first = run_bench(["cot"], "gsm8k", limit=4, lm=lm, concurrency=4, data_dir=DATA,
                              out_dir=tmp_path / "both", progress=False)
        assert set(usage.replicas) == set(lm.base_urls)  # both replicas answered
        os.killpg(members[0].pid, signal.SIGKILL)
        second = run_bench(["cot"], "gsm8k", limit=4, lm=lm, concurrency=4, data_dir=DATA,
                           out_dir=tmp_path / "one", progress=False)
        for results in (first, second):
            (summary,) = results["results"]
            assert summary["questions"] == 4 and "LMTimeoutError" not in summary["errors"]
    finally:
        state.down(grace_s=5)
