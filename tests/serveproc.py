"""Real ``reasonflow serve`` processes for tests: a subprocess started as a user starts it, real HTTP,
ready once ``/healthz`` answers, stopped with SIGTERM (killed if it outlives ``STOP_TIMEOUT_S``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
STOP_TIMEOUT_S = 30


def start(argv: list[str], **env: str) -> subprocess.Popen:
    """``python ARGV...`` from the repository, with this tree first on the path and ``env`` added
    (a value of None removes that variable)."""
    environ = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for key, value in env.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return subprocess.Popen([sys.executable, *argv], cwd=REPO, env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def serve(*args: str, **env: str) -> subprocess.Popen:
    """``reasonflow serve ARGS...`` as a subprocess."""
    return start(["-m", "reasonflow.cli", "serve", *args], **env)


def wait_ready(proc: subprocess.Popen, url: str, timeout_s: float) -> None:
    """Block until ``url``/healthz answers; fail with the process's output if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"the server did not start: {proc.stdout.read()[-3000:]}") from None
            time.sleep(0.1)


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
