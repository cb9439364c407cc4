"""A small pool of Math-Verify worker processes; a check that overruns its budget kills its worker.

What it does: ``WorkerPool.equal(pred, gold, timeout_s)`` sends one comparison to an idle worker
(``_mv_worker.py``) and returns its verdict. Workers start lazily, at most ``size`` run at once, and
idle ones are reused. No signals are used in the caller, so any thread (and an event loop, through
``asyncio.to_thread``) may call it.

It keeps its word under load:

- the budget: a call returns within ``timeout_s`` of wall time, the wait for a free worker included
  (the queue is bounded by each caller's own deadline); only a fresh worker's start is on top
  (bounded separately by ``start_timeout_s``: about a second, paid by the first call and after a kill);
- the verdict: the worker spends at most ``CPU_SHARE * timeout_s`` seconds of its own CPU time on a
  check (a CPU-time budget, so load does not change it) and answers False when that runs out; each
  verdict the worker gives is kept (an LRU of ``memo_size`` inputs), and concurrent calls with the
  same input wait for the one check in flight, so the same input gets the same verdict every time.

A check cut off by the wall clock (a worker stuck in C code, or a caller whose deadline passed in the
queue) is False for that call and not kept; a stuck worker is killed (SIGKILL) and replaced.

How to run: ``reasonflow.checking.latex`` owns the one pool; use ``math_equal`` rather than this.

What it does not guarantee: POSIX only (``select.poll`` on pipes, ``start_new_session``, ITIMER_PROF);
a verdict cut off by the wall clock under heavy load is False, as any timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path

from reasonflow.errors import ConfigError

WORKER_PATH = Path(__file__).with_name("_mv_worker.py")
KILL_WAIT_S = 5.0  # reaping a SIGKILLed worker; it cannot refuse, so this only guards a wedged kernel
READ_CHUNK_BYTES = 1 << 16
CPU_SHARE = 0.8  # of timeout_s: a check's CPU budget in the worker, so its own answer beats the wall clock
DEFAULT_MEMO_SIZE = 4096  # verdicts kept per pool


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

    def __init__(self, size: int, start_timeout_s: float, memory_bytes: int, memo_size: int = DEFAULT_MEMO_SIZE):
        if size < 1 or start_timeout_s <= 0 or memory_bytes < 0 or memo_size < 0:
            raise ConfigError(f"bad worker pool bounds: size={size}, start_timeout_s={start_timeout_s}")
        self.size, self.start_timeout_s, self.memory_bytes = size, start_timeout_s, memory_bytes
        self.memo_size = memo_size
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child must not share our pipes

    def _reset(self) -> None:
        self._slots = threading.BoundedSemaphore(self.size)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._memo: OrderedDict[bytes, bool] = OrderedDict()
        self._inflight: dict[bytes, Future] = {}

    def equal(self, pred: str, gold: str, timeout_s: float) -> bool:
        """Math-Verify's verdict on ``pred`` against ``gold`` within ``timeout_s`` (False past it)."""
        deadline = time.monotonic() + timeout_s
        key = hashlib.sha256(json.dumps([pred, gold, timeout_s]).encode()).digest()
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
            leader = key not in self._inflight
            future = self._inflight.setdefault(key, Future())
        if not leader:  # the same input is being checked: its verdict is ours
            try:
                return future.result(timeout=max(deadline - time.monotonic(), 0) + self.start_timeout_s)
            except Exception:  # noqa: BLE001 - the leader failed or took too long: no verdict for us either
                return False
        verdict, kept = False, False
        try:
            verdict, kept = self._check(pred, gold, timeout_s, deadline)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(verdict)
        finally:
            with self._lock:
                self._inflight.pop(key, None)
                if kept and self.memo_size:
                    self._memo[key] = verdict
                    while len(self._memo) > self.memo_size:
                        self._memo.popitem(last=False)
        return verdict

    def _check(self, pred: str, gold: str, timeout_s: float, deadline: float) -> tuple[bool, bool]:
        """``(verdict, kept)``: kept when the worker itself answered (a verdict, or its CPU budget ran out)."""
        if not self._slots.acquire(timeout=max(deadline - time.monotonic(), 0)):
            return False, False  # no worker came free within the budget
        try:
            worker = self._take()
            try:
                if not worker.ready:  # a fresh worker's start is bounded by start_timeout_s, not the budget
                    started = time.monotonic()
                    self._wait_ready(worker)
                    deadline += time.monotonic() - started
                verdict = self._ask(worker, pred, gold, timeout_s, deadline)
            except BaseException:  # a start failure, or an interrupt mid-read: its state is unknown
                self._discard(worker)
                raise
            if verdict is None:
                self._discard(worker)
                try:
                    self._give_back(self._spawn())  # start the replacement now, off the next call's clock
                except ConfigError:  # out of processes or descriptors: the next call retries (or raises)
                    pass
                return False, False
            self._give_back(worker)
            return verdict, True
        finally:
            self._slots.release()

    def forget(self) -> None:
        """Drop the kept verdicts (for tests and long-lived processes that want fresh checks)."""
        with self._lock:
            self._memo.clear()

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

    def _ask(self, worker: _Worker, pred: str, gold: str, timeout_s: float, deadline: float) -> bool | None:
        if not worker.send({"pred": pred, "gold": gold, "cpu_s": CPU_SHARE * timeout_s}):
            return None
        reply = worker.read(max(deadline - time.monotonic(), 0.001))
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
