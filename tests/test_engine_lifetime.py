"""An engine never outlives the process that started it (issue #13, point 9).

The unit tests use a stand-in engine (a sleeping Python process launched through the real ``Engine``
code path, with only the vLLM command and readiness probe replaced), owned by a separate process
that is then ended each way an owner can end: SIGKILL, SIGTERM, SIGINT, ``sys.exit`` and
``os._exit``. Before the lifeline watchdog only a clean exit (atexit) stopped it. Owners are started
with SIGINT reset to its default, since a background CI shell starts children with SIGINT ignored.

The ``engine``-marked tests do the same with the real vLLM engine: ``reasonflow serve`` without
``--base-url`` under SIGTERM and SIGINT, and a script that calls ``reasonflow.configure()`` killed
mid-run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from reasonflow.config import home_dir
from tests.conftest import alive as _alive

REPO = Path(__file__).resolve().parents[1]
GONE_WITHIN_S = 15.0

OWNER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from reasonflow.engine import server, state

    mode, detached = sys.argv[1], sys.argv[2] == "detached"
    server.resolve_model = lambda model: (Path("/tmp"), "standin")
    server.Engine.command = lambda self: [sys.executable, "-c", "import time\\nwhile True: time.sleep(0.2)"]
    server.Engine.wait_ready = lambda self: None
    if detached:
        engine = state.up()[0]
    else:
        engine = state.shared_engine()
    print(engine.pid, flush=True)
    sys.stdin.readline()  # the test first sees the engine alive, then lets the owner end
    if mode == "exit":
        sys.exit(0)
    if mode == "os_exit":
        os._exit(0)
    if mode == "uvicorn_sigterm":  # what uvicorn does: handle SIGTERM, then re-raise it with the default action
        import signal
        def reraise(signum, frame):
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        signal.signal(signal.SIGTERM, reraise)
    time.sleep(120)
""")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_gone(pid: int, within_s: float = GONE_WITHIN_S) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _owner(tmp_path: Path, mode: str, detached: bool = False) -> tuple[subprocess.Popen, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("REASONFLOW_BASE_URL",)}
    env.update(REASONFLOW_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO))
    owner = subprocess.Popen([sys.executable, "-c", OWNER, mode, "detached" if detached else "owned"], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=_default_sigint, cwd=REPO)
    line = owner.stdout.readline()
    assert line.strip().isdigit(), f"the owner did not start its engine: {line!r}"
    return owner, int(line)


def _go(owner: subprocess.Popen) -> None:
    owner.stdin.write("go\n")
    owner.stdin.flush()


@pytest.mark.parametrize("how", ["sigkill", "sigterm", "uvicorn_sigterm", "sigint", "exit", "os_exit"])
def test_an_owned_engine_stops_when_its_owner_ends(tmp_path, how):
    owner, engine = _owner(tmp_path, how if how in ("exit", "os_exit", "uvicorn_sigterm") else "wait")
    try:
        assert _alive(engine)
        _go(owner)
        if how in ("sigkill", "sigterm", "uvicorn_sigterm", "sigint"):
            time.sleep(0.3)
            owner.send_signal({"sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM, "sigint": signal.SIGINT,
                               "uvicorn_sigterm": signal.SIGTERM}[how])
        owner.wait(timeout=30)
        assert _wait_gone(engine), f"the engine (pid {engine}) outlived its owner ({how})"
    finally:
        for pid in (owner.pid, engine):
            try:
                os.killpg(pid, signal.SIGKILL) if pid == engine else os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def test_a_detached_engine_outlives_the_command_that_started_it(tmp_path):
    owner, engine = _owner(tmp_path, "os_exit", detached=True)
    try:
        _go(owner)
        owner.wait(timeout=30)
        time.sleep(2.0)
        assert _alive(engine)  # `reasonflow engine up` leaves it running for `engine down`
    finally:
        try:
            os.killpg(engine, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert _wait_gone(engine)


def test_stop_closes_the_lifeline_and_the_watchdog_exits(tmp_path, monkeypatch):
    from reasonflow.engine import server

    monkeypatch.setenv("REASONFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(server, "resolve_model", lambda model: (Path("/tmp"), "standin"))
    monkeypatch.setattr(server.Engine, "command",
                        lambda self: [sys.executable, "-c", "import time\nwhile True: time.sleep(0.2)"])
    monkeypatch.setattr(server.Engine, "wait_ready", lambda self: None)
    engine = server.Engine(stop_grace_s=2).start()
    watchdog = engine.watchdog
    assert watchdog is not None and watchdog.poll() is None
    engine.stop()
    assert not _alive(engine.pid) and watchdog.poll() is not None


# --- the real engine (slow: each test starts its own vLLM) ------------------------------------------------

def _private_home(tmp_path: Path) -> Path:
    """A fresh REASONFLOW_HOME (no detached engine in it) sharing the user's model cache."""
    home = tmp_path / "home"
    home.mkdir()
    for sub in ("models", "downloads"):
        (home_dir() / sub).mkdir(parents=True, exist_ok=True)
        (home / sub).symlink_to(home_dir() / sub)
    return home


def _engine_pids(home: Path) -> set[int]:
    """vLLM processes started with this REASONFLOW_HOME in their environment."""
    found = set()
    marker = f"REASONFLOW_HOME={home}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if b"vllm" in cmdline and marker in environ.split(b"\0"):
            found.add(int(entry))
    return found


def _child_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REASONFLOW_BASE_URL", "REASONFLOW_TEST_BASE_URL")}
    env.update(REASONFLOW_HOME=str(home))
    return env


@pytest.mark.engine
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_serve_without_base_url_stops_its_engine_on_a_signal(tmp_path, sig, sole_engine):
    from reasonflow.serve.testing import free_port

    home, port = _private_home(tmp_path), free_port()
    serve = subprocess.Popen([sys.executable, "-m", "reasonflow.cli", "serve", "gsm8k.cot", "--port", str(port),
                              "--shutdown-grace", "5"], env=_child_env(home), cwd=REPO, preexec_fn=_default_sigint,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 1500
        while time.monotonic() < deadline:
            assert serve.poll() is None, "reasonflow serve exited before it was ready"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        engines = _engine_pids(home)
        assert engines, "serve started no engine of its own"
        serve.send_signal(sig)
        serve.wait(timeout=120)
        assert all(_wait_gone(pid, 90) for pid in engines), f"the engine outlived `reasonflow serve` ({sig.name})"
    finally:
        serve.kill()
        for pid in _engine_pids(home):
            os.kill(pid, signal.SIGKILL)


SCRIPT = textwrap.dedent("""
    import sys, time
    import reasonflow
    lm = reasonflow.configure()
    print("configured", flush=True)
    program = reasonflow.program("gsm8k.cot")
    while True:
        program(question="What is 2 + 3?")
""")


@pytest.mark.engine
@pytest.mark.timeout(1800)
def test_a_script_killed_mid_run_leaves_no_engine(tmp_path, sole_engine):
    home = _private_home(tmp_path)
    script = subprocess.Popen([sys.executable, "-c", SCRIPT], env=_child_env(home), cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=_default_sigint)
    try:
        assert script.stdout.readline().strip() == "configured"
        time.sleep(5)  # mid-run: requests in flight
        engines = _engine_pids(home)
        assert engines, "configure() started no engine"
        script.send_signal(signal.SIGKILL)
        script.wait(timeout=60)
        assert all(_wait_gone(pid, 90) for pid in engines), "the engine outlived the killed script"
    finally:
        script.kill()
        for pid in _engine_pids(home):
            os.kill(pid, signal.SIGKILL)


def test_engine_markers_are_registered():
    assert re.search(r"engine:", (REPO / "pyproject.toml").read_text())
