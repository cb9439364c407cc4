"""A small pool of Math-Verify worker processes; a check that overruns its budget kills its worker.

What it does: ``WorkerPool.equal(pred, gold, timeout_s)`` sends one comparison to an idle worker
(``_mv_worker.py``) and waits at most ``timeout_s`` for the answer. On a timeout or a dead worker it
kills that process (SIGKILL), starts a replacement and returns False. Workers start lazily, at most
``size`` run at once, and idle ones are reused. No signals are used in the caller, so any thread (and
an event loop, through ``asyncio.to_thread``) may call it.

How to run: ``reasonflow.checking.latex`` owns the one pool; use ``math_equal`` rather than this.

What it does not guarantee: ``timeout_s`` bounds the check itself, not the wait for a free worker
(at most ``size`` checks run at once; others queue) nor a fresh worker's start (bounded separately
by ``start_timeout_s``). POSIX only (``select.poll`` on pipes, ``start_new_session``).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from reasonflow.errors import ConfigError

WORKER_PATH = Path(__file__).with_name("_mv_worker.py")
KILL_WAIT_S = 5.0  # reaping a SIGKILLed worker; it cannot refuse, so this only guards a wedged kernel
READ_CHUNK_BYTES = 1 << 16


class _Worker:
    """One worker process and the unread bytes of its stdout."""

    def __init__(self, memory_bytes: int):
        config = json.dumps({"sys_path": list(sys.path), "memory_bytes": memory_bytes})
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(WORKER_PATH), config],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C goes to the caller, which then kills us
        )
        self.ready = False
        self._buffer = b""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, message: dict) -> bool:
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
            return True
        except (OSError, ValueError):  # broken pipe or closed file: the worker is gone
            return False

    def read(self, timeout_s: float) -> dict | None:
        """The next JSON line, or None when none arrives within ``timeout_s`` or the worker died."""
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        poller = select.poll()  # not select.select: that fails for descriptors above 1023
        poller.register(fd, select.POLLIN)
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(max(1, int(remaining * 1000))):
                return None
            chunk = os.read(fd, READ_CHUNK_BYTES)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except ValueError:
            return None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=KILL_WAIT_S)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class WorkerPool:
    """At most ``size`` Math-Verify workers, shared by every thread of this process."""

    def __init__(self, size: int, start_timeout_s: float, memory_bytes: int):
        if size < 1 or start_timeout_s <= 0 or memory_bytes < 0:
            raise ConfigError(f"bad worker pool bounds: size={size}, start_timeout_s={start_timeout_s}")
        self.size, self.start_timeout_s, self.memory_bytes = size, start_timeout_s, memory_bytes
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child must not share our pipes

    def _reset(self) -> None:
        self._slots = threading.BoundedSemaphore(self.size)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()

    def equal(self, pred: str, gold: str, timeout_s: float) -> bool:
        """Math-Verify's verdict on ``pred`` against ``gold``; False if it takes over ``timeout_s``."""
        with self._slots:
            worker = self._take()
            try:
                verdict = self._ask(worker, pred, gold, timeout_s)
            except BaseException:  # a start failure, or an interrupt mid-read: its state is unknown
                self._discard(worker)
                raise
            if verdict is None:
                self._discard(worker)
                try:
                    self._give_back(self._spawn())  # start the replacement now, off the next call's clock
                except ConfigError:  # out of processes or descriptors: the next call retries (or raises)
                    pass
                return False
            self._give_back(worker)
            return verdict

    def warm(self) -> None:
        """Start every worker now and wait until each is ready, so later checks pay no start-up."""
        held, taken = 0, []
        try:
            for _ in range(self.size):
                self._slots.acquire()
                held += 1
                taken.append(self._take())
            for worker in taken:
                if not worker.ready:
                    self._wait_ready(worker)
        except BaseException:
            for worker in taken:
                self._discard(worker)
            taken = []
            raise
        finally:
            for worker in taken:
                self._give_back(worker)
            for _ in range(held):
                self._slots.release()

    def _ask(self, worker: _Worker, pred: str, gold: str, timeout_s: float) -> bool | None:
        if not worker.ready:
            self._wait_ready(worker)
        if not worker.send({"pred": pred, "gold": gold, "cpu_s": timeout_s}):
            return None
        reply = worker.read(timeout_s)
        return None if reply is None else bool(reply.get("equal"))

    def _wait_ready(self, worker: _Worker) -> None:
        message = worker.read(self.start_timeout_s)
        if message is None and not worker.alive():
            raise ConfigError(
                f"the Math-Verify worker exited during start-up (exit code {worker.proc.returncode}); "
                f"run `{sys.executable} -c 'import math_verify'` to see why"
            )
        if message is None:
            raise ConfigError(
                f"the Math-Verify worker did not start within {self.start_timeout_s:g} s; "
                "the machine may be overloaded: retry, or build a WorkerPool with a longer start_timeout_s"
            )
        if "fatal" in message:
            raise ConfigError(f"{message['fatal']}; if it is missing: pip install 'math-verify[antlr4_13_2]'")
        worker.ready = True

    def _spawn(self) -> _Worker:
        try:
            worker = _Worker(self.memory_bytes)
        except OSError as exc:  # out of processes, descriptors or memory
            raise ConfigError(f"cannot start a Math-Verify worker process: {exc}") from exc
        with self._lock:
            self._all.add(worker)
        return worker

    def _take(self) -> _Worker:
        while True:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                return self._spawn()
            if worker.alive():
                return worker
            self._discard(worker)

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)

    def close(self) -> None:
        """Kill every worker, busy or idle. The pool stays usable and starts fresh ones on demand."""
        with self._lock:
            workers, self._all, self._idle = list(self._all), set(), []
        for worker in workers:
            worker.kill()
