"""Run a short generated Python program in a limited subprocess and read back its ``answer`` variable.

What it does: ``run_code("answer = 6 * 7")`` returns ``SandboxResult(answer=42, stdout="", ...)``.
The program runs in a fresh ``python -I -S -B`` process (``reasonflow/sandbox_child.py``) with an
empty environment, a temporary working directory that is deleted afterwards, stdin from /dev/null and
its own session. The child limits itself before reading the program: CPU seconds (``cpu_s``), address
space (``memory_mb``), file size, open files, processes, no core dumps. The parent kills the whole
process group at the wall-clock deadline (``timeout_s``). Only ``ALLOWED_MODULES`` can be imported,
``open``/``input``/``exec``/``eval``/``compile``/``breakpoint`` are gone from the builtins, and an
audit hook (``sys.addaudithook``) refuses file opens, ``os.*`` calls, processes, sockets and new
imports, however the program reaches them. Printed output is captured up to MAX_OUTPUT_BYTES. With
``ISOLATE_NETWORK = True``, running as root where ``unshare --net`` works, the child also gets an
empty network namespace.
Every failure is a typed ``SandboxError`` subclass carrying the child's stderr tail:
``SandboxTimeout``, ``SandboxMemoryError``, ``SandboxForbidden``, ``SandboxCodeError``,
``SandboxNoAnswer`` and ``SandboxCrashError``; bad limits are a ``ConfigError``. ``arun_code`` is the
same for async callers. At most MAX_CONCURRENT_SANDBOXES programs run at once per process.

How to run: ``from reasonflow.sandbox import run_code; run_code(code, timeout_s=2)``.

What it does NOT guarantee: this is not a true security sandbox. The import whitelist, the trimmed
builtins and the audit hook are Python-level guards inside the same interpreter as the program, and
Python introspection (``().__class__.__base__.__subclasses__()``, a module's ``sys`` attribute)
reaches every module already loaded. Calls that raise no audit event stay possible (``os.stat`` of a
path, ``os.write`` to an inherited descriptor, ``os.environ``, which is empty), and a memory-corruption
bug in CPython or a C extension escapes all of it. There is no file-system isolation beyond the
refused ``open`` events (no chroot, no seccomp), the network namespace is opt-in (ISOLATE_NETWORK),
RLIMIT_NPROC does not bind root, and a child stuck in the kernel after SIGKILL is reaped late (the
error is raised on time regardless). Run untrusted code in a container or VM as well; use this to keep
a language model's honest mistakes (loops, huge allocations, stray I/O) from harming the host.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonflow.errors import ConfigError, SandboxError

DEFAULT_SANDBOX_TIMEOUT_S = 5.0  # wall clock, from spawn to the kill of the process group
DEFAULT_SANDBOX_CPU_S = 3  # CPU seconds (RLIMIT_CPU; whole seconds)
DEFAULT_SANDBOX_MEMORY_MB = 256  # address space (RLIMIT_AS) of the child, interpreter included
MAX_CODE_CHARS = 10_000  # longer programs are refused before any process starts
MAX_OUTPUT_BYTES = 64 * 1024  # printed output kept per run (stdout and stderr each); the rest is dropped
MAX_ANSWER_CHARS = 10_000  # the answer's JSON text
MAX_STDERR_TAIL_CHARS = 2_000  # how much of the child's stderr an error quotes
MAX_OPEN_FILES = 32  # RLIMIT_NOFILE of the child
MAX_CONCURRENT_SANDBOXES = max(2, os.cpu_count() or 2)  # per parent process; more calls wait their turn
# Opt in to an empty network namespace (root only, where `unshare --net` works). Off by default: creating
# a namespace can stall in the kernel, where even SIGKILL waits, which would break the deadline.
ISOLATE_NETWORK = False

ALLOWED_MODULES = ("math", "cmath", "fractions", "decimal", "numbers", "statistics", "itertools", "functools",
                   "collections", "operator", "heapq", "bisect", "re", "string", "datetime")

CHILD_SCRIPT = Path(__file__).with_name("sandbox_child.py")
CHILD_ENV: dict[str, str] = {}  # the child's whole environment: nothing of the parent's is passed on
_FILE_LIMIT_BYTES = 16 * MAX_OUTPUT_BYTES + 4 * MAX_ANSWER_CHARS  # RLIMIT_FSIZE: fits the JSON result line
_KILL_WAIT_S = 5.0
_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_SANDBOXES)


class _SandboxFailure(SandboxError):
    """Base of the typed sandbox errors: ``reason`` says what happened, ``stderr_tail`` what the child said."""

    def __init__(self, reason: str, stderr_tail: str = "", stdout: str = ""):
        self.reason, self.stderr_tail, self.stdout = reason, stderr_tail, stdout
        detail = f"\n--- child stderr (tail) ---\n{stderr_tail}" if stderr_tail.strip() else ""
        super().__init__(reason + detail)


class SandboxTimeout(_SandboxFailure):
    """The program ran past its wall-clock deadline or its CPU-time limit and was killed."""


class SandboxMemoryError(_SandboxFailure):
    """The program tried to use more memory than ``memory_mb``."""


class SandboxForbidden(_SandboxFailure):
    """The program tried something the sandbox refuses: a file, a process, a socket, input, an import."""


class SandboxCodeError(_SandboxFailure):
    """The program is too long, does not compile, raised an exception, or its answer cannot be reported."""


class SandboxNoAnswer(_SandboxFailure):
    """The program finished without setting a variable named ``answer``."""


class SandboxCrashError(_SandboxFailure):
    """The child process died without reporting a result (a signal, or output past the file limit)."""


_STATUS_ERRORS: dict[str, type[_SandboxFailure]] = {
    "no_answer": SandboxNoAnswer, "syntax": SandboxCodeError, "error": SandboxCodeError,
    "bad_answer": SandboxCodeError, "memory": SandboxMemoryError, "forbidden": SandboxForbidden,
}


@dataclass(frozen=True)
class SandboxResult:
    """A program that ran to the end: its ``answer`` (plain JSON data) and what it printed."""

    answer: Any
    stdout: str = ""
    stdout_truncated: bool = False
    duration_s: float = 0.0
    network_isolated: bool = False


def run_code(code: str, *, timeout_s: float = DEFAULT_SANDBOX_TIMEOUT_S, cpu_s: int = DEFAULT_SANDBOX_CPU_S,
             memory_mb: int = DEFAULT_SANDBOX_MEMORY_MB) -> SandboxResult:
    """Run ``code`` in a fresh limited subprocess and return its ``answer`` variable.

    Fractions and Decimals come back as ints (when whole) or floats, tuples and sets as lists, other
    objects as their ``repr``. Raises a ``SandboxError`` subclass on any failure; never hangs past
    ``timeout_s`` (plus process start-up and the wait for a free slot).
    """
    check_limits(timeout_s, cpu_s, memory_mb)
    if not isinstance(code, str):
        raise ConfigError(f"code must be a string, got {type(code).__name__}")
    if len(code) > MAX_CODE_CHARS:
        raise SandboxCodeError(f"the program is {len(code)} characters long, over MAX_CODE_CHARS={MAX_CODE_CHARS}")
    prefix = _network_prefix()
    spec = {"cpu_s": int(cpu_s), "memory_bytes": int(memory_mb) * 1024 * 1024, "file_bytes": _FILE_LIMIT_BYTES,
            "open_files": MAX_OPEN_FILES, "alarm_s": math.ceil(timeout_s) + 1, "allowed_modules": ALLOWED_MODULES,
            "max_output_bytes": MAX_OUTPUT_BYTES, "max_answer_chars": MAX_ANSWER_CHARS}
    argv = [*prefix, sys.executable, "-I", "-S", "-B", str(CHILD_SCRIPT), json.dumps(spec)]
    with _SLOTS, tempfile.TemporaryDirectory(prefix="reasonflow-sandbox-") as tmp:
        work = Path(tmp)
        (work / "program.py").write_text(code, encoding="utf-8")
        with open(work / "stdout", "w+b") as out, open(work / "stderr", "w+b") as err:
            started = time.monotonic()
            returncode, timed_out = _spawn_and_wait(argv, work, out, err, timeout_s)
            duration = time.monotonic() - started
            stdout, stderr = _read(out, _FILE_LIMIT_BYTES), _read(err, _FILE_LIMIT_BYTES)
    tail = stderr[-MAX_STDERR_TAIL_CHARS:]
    if timed_out:
        raise SandboxTimeout(f"the program did not finish within its {timeout_s:g} s wall-clock deadline "
                             "and was killed; look for an endless loop or make it cheaper", tail)
    result = _result_line(stdout)
    if result is None:
        raise _crash(returncode, cpu_s, timeout_s, tail)
    status = result.get("status")
    if status == "ok":
        return SandboxResult(answer=json.loads(result["answer"]), stdout=result.get("stdout", ""),
                             stdout_truncated=bool(result.get("stdout_truncated")), duration_s=duration,
                             network_isolated=bool(prefix))
    error = _STATUS_ERRORS.get(status, SandboxCrashError)
    raise error(str(result.get("error") or f"the program failed (status {status!r})"), tail,
                result.get("stdout", ""))


async def arun_code(code: str, **limits) -> SandboxResult:
    """``run_code`` from async code, in a worker thread; several calls run concurrently."""
    return await asyncio.to_thread(run_code, code, **limits)


def check_limits(timeout_s: float, cpu_s: int, memory_mb: int) -> None:
    """Raise ``ConfigError`` unless the limits are usable (callers check them before any work)."""
    if not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 600:
        raise ConfigError(f"timeout_s must be a number of seconds in (0, 600], got {timeout_s!r}")
    if isinstance(cpu_s, bool) or not isinstance(cpu_s, int) or not 1 <= cpu_s <= 600:
        raise ConfigError(f"cpu_s must be a whole number of CPU seconds in 1..600, got {cpu_s!r}")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or not 64 <= memory_mb <= 65536:
        raise ConfigError(f"memory_mb must be an int in 64..65536 (the interpreter itself needs ~30 MB), "
                          f"got {memory_mb!r}")


def _spawn_and_wait(argv: list[str], cwd: Path, out, err, timeout_s: float) -> tuple[int | None, bool]:
    """Start the child in its own session; kill its process group at the deadline (or on any error)."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=CHILD_ENV, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                close_fds=True, start_new_session=True)
    except OSError as exc:
        raise SandboxCrashError(f"could not start the sandbox process ({exc}); check the process limits of "
                                "this machine") from exc
    try:
        return proc.wait(timeout=timeout_s), False
    except subprocess.TimeoutExpired:
        return None, True
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=_KILL_WAIT_S)
            except subprocess.TimeoutExpired:
                pass  # killed but stuck in the kernel: subprocess reaps it later; the caller gets its error now


def _read(handle, limit: int) -> str:
    handle.seek(0)
    return handle.read(limit).decode("utf-8", "replace")


def _result_line(stdout: str) -> dict | None:
    lines = stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return result if isinstance(result, dict) else None


def _crash(returncode: int | None, cpu_s: int, timeout_s: float, tail: str) -> _SandboxFailure:
    """The error for a child that died without writing its result line."""
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return SandboxTimeout(f"the program used up its {cpu_s} s CPU-time limit and was killed; look for an "
                              "endless loop or make it cheaper", tail)
    if returncode == -signal.SIGALRM:
        return SandboxTimeout(f"the program did not finish within its {timeout_s:g} s wall-clock deadline", tail)
    if "MemoryError" in tail:
        return SandboxMemoryError("the program ran out of memory", tail)
    how = f"signal {signal.Signals(-returncode).name}" if returncode and returncode < 0 else f"status {returncode}"
    return SandboxCrashError(f"the sandboxed process ended with {how} without reporting a result (it may have "
                             f"written past the {_FILE_LIMIT_BYTES}-byte output limit)", tail)


def _network_prefix() -> tuple[str, ...]:
    return _unshare_net() if ISOLATE_NETWORK else ()


@functools.lru_cache(maxsize=1)
def _unshare_net() -> tuple[str, ...]:
    """``unshare --net --`` when running as root and it works here (checked once), else nothing."""
    tool = shutil.which("unshare")
    if not tool or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return ()
    try:
        probe = subprocess.run([tool, "--net", "--", "true"], env=CHILD_ENV, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ()
    return (tool, "--net", "--") if probe.returncode == 0 else ()
