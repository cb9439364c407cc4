"""Run a short generated Python program in a jail and read back its ``answer`` variable.

What it does: ``run_code("answer = 6 * 7")`` returns ``SandboxResult(answer=42, stdout="", ...)``.
Each program runs in a jail of its own, built with Debian's bubblewrap (``bwrap``): fresh user, PID,
network, IPC, UTS, mount and cgroup namespaces, uid 65534 with no capabilities and no_new_privs,
an empty environment, and a read-only file system holding only the interpreter, its standard
library (site-packages hidden behind an empty mount), the shared libraries it maps, ``/dev`` and a
small tmpfs ``/tmp`` as the working directory; there is no ``/proc``, no ``/etc``, no network and
no other process. Inside, a supervisor (``reasonflow/sandbox_child.py``) forks a worker that sets
its rlimits (CPU seconds, address space, open files, processes, file size, no core) and a seccomp
filter (no exec, fork or clone, sockets, ptrace or process_vm, mounts, namespaces, keyrings, bpf,
io_uring, signals but to itself) before the program's first line. The result comes back on a
private pipe to the supervisor, which forwards it stamped with a nonce it read only after the fork;
the program's own fds 0-2 are /dev/null, so it cannot write to the parent's channel, and a record
without the nonce is refused. The parent kills the jail at the wall-clock deadline (``timeout_s``,
counted from the call, the wait for a slot included); bubblewrap's --die-with-parent and the PID
namespace take every process inside down with it, so nothing outlives the deadline or the parent.
A warm pool keeps ``SPARES`` jails started and idle, so a program does not wait for one to boot.

Every failure is a typed ``SandboxError`` subclass carrying the child's stderr tail:
``SandboxTimeout``, ``SandboxMemoryError``, ``SandboxForbidden``, ``SandboxCodeError``,
``SandboxNoAnswer``, ``SandboxCrashError`` and ``SandboxUnavailable``; bad limits are a
``ConfigError``. ``arun_code`` is the same for async callers, on the sandbox's own threads (never the
event loop's default executor). At most MAX_CONCURRENT_SANDBOXES programs run at once per process.

Where bubblewrap is missing or user namespaces are off, ``isolation()`` says why and ``run_code``
raises ``SandboxUnavailable``, unless the caller opted in to unisolated code
(``REASONFLOW_ALLOW_UNISOLATED_CODE=1`` or ``allow_unisolated(True)``): then the same supervisor
runs bare, as the calling user, with the seccomp filters, rlimits and Python-level guards but no
namespaces. It never falls back silently; ``SandboxResult.isolated`` says which it was.

How to run: ``from reasonflow.sandbox import run_code; run_code(code, timeout_s=2)``.
``python -m reasonflow.sandbox`` prints what isolation this host has.

What it does NOT guarantee: a kernel bug (namespaces, seccomp) or a bubblewrap bug escapes it; the
program can use its CPU, memory and /tmp quota to the limits, and read the interpreter's standard
library; seccomp is x86-64 only (elsewhere the namespaces and rlimits still apply and
``SandboxResult.seccomp`` is False); the import whitelist and trimmed builtins are conveniences for
typed errors, not the boundary. In unisolated mode a program can read whatever the calling user can.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import math
import os
import queue
import secrets
import select
import shutil
import signal
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonflow.errors import ConfigError, SandboxError

DEFAULT_SANDBOX_TIMEOUT_S = 5.0  # wall clock, from the call to the kill of the jail
DEFAULT_SANDBOX_CPU_S = 3  # CPU seconds (RLIMIT_CPU; whole seconds)
DEFAULT_SANDBOX_MEMORY_MB = 256  # address space (RLIMIT_AS) of the worker, interpreter included
MAX_CODE_CHARS = 10_000  # longer programs are refused before any process starts
MAX_OUTPUT_BYTES = 64 * 1024  # printed output kept per run; the rest is dropped
MAX_ANSWER_CHARS = 10_000  # the answer's JSON text
MAX_STDERR_TAIL_CHARS = 2_000  # how much of the child's stderr an error quotes
MAX_OPEN_FILES = 32  # RLIMIT_NOFILE of the worker
MAX_CONCURRENT_SANDBOXES = 32  # per parent process; more calls wait their turn, within their deadline
SPARES = 2  # jails kept booted and idle (warm pool); 0 turns the pool off
GUARDS = True  # the Python-level guards, for typed errors; the jail holds without them (the tests check)
JAIL_TMP_BYTES = 16 * 1024 * 1024  # the jail's tmpfs /tmp
JAIL_UID = 65534  # nobody
ALLOW_UNISOLATED_ENV = "REASONFLOW_ALLOW_UNISOLATED_CODE"

ALLOWED_MODULES = ("math", "cmath", "fractions", "decimal", "numbers", "statistics", "itertools", "functools",
                   "collections", "operator", "heapq", "bisect", "re", "string", "datetime")

CHILD_SCRIPT = Path(__file__).with_name("sandbox_child.py")
JAIL_CHILD_PATH = "/sandbox/child.py"  # where the supervisor script is mounted inside the jail
CHILD_ENV: dict[str, str] = {}  # the child's whole environment: nothing of the parent's is passed on
_FILE_LIMIT_BYTES = 16 * MAX_OUTPUT_BYTES + 4 * MAX_ANSWER_CHARS  # RLIMIT_FSIZE
_MAX_REPLY_BYTES = 4 << 20  # what the parent reads from a jail's channel
_KILL_WAIT_S = 5.0
_PROBE_TIMEOUT_S = 20.0
_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_SANDBOXES)
_EXECUTOR = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_SANDBOXES, thread_name_prefix="reasonflow-sandbox")
_allow_override: bool | None = None


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
    """The jail died without reporting a result (a signal, a failed start, a tampered channel)."""


class SandboxUnavailable(_SandboxFailure):
    """No process isolation on this host, and the caller did not opt in to unisolated code."""


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
    network_isolated: bool = False  # no network namespace of the host (True in a jail)
    isolated: bool = False  # ran in a bubblewrap jail (False: unisolated, by explicit opt-in)
    seccomp: bool = False  # the worker's seccomp filter was installed


@dataclass(frozen=True)
class Isolation:
    """What this host offers: ``available`` jails, and ``reason`` (why not, or what they are)."""

    available: bool
    reason: str
    tool: str | None = None
    seccomp: bool = False


# --- public API ------------------------------------------------------------------------------------

def run_code(code: str, *, timeout_s: float = DEFAULT_SANDBOX_TIMEOUT_S, cpu_s: int = DEFAULT_SANDBOX_CPU_S,
             memory_mb: int = DEFAULT_SANDBOX_MEMORY_MB) -> SandboxResult:
    """Run ``code`` in a fresh jail and return its ``answer`` variable.

    Fractions and Decimals come back as ints (when whole) or floats, tuples and sets as lists, other
    objects as their ``repr``. Raises a ``SandboxError`` subclass on any failure; never takes longer
    than ``timeout_s`` (plus the kill), the wait for a free slot included.
    """
    check_limits(timeout_s, cpu_s, memory_mb)
    if not isinstance(code, str):
        raise ConfigError(f"code must be a string, got {type(code).__name__}")
    if len(code) > MAX_CODE_CHARS:
        raise SandboxCodeError(f"the program is {len(code)} characters long, over MAX_CODE_CHARS={MAX_CODE_CHARS}")
    isolated = require()
    started = time.monotonic()
    deadline = started + timeout_s
    if not _SLOTS.acquire(timeout=timeout_s):
        raise SandboxTimeout(f"no sandbox slot came free within the {timeout_s:g} s wall-clock deadline "
                             f"({MAX_CONCURRENT_SANDBOXES} programs were running)")
    try:
        spec = {"cpu_s": int(cpu_s), "memory_bytes": int(memory_mb) * 1024 * 1024, "file_bytes": _FILE_LIMIT_BYTES,
                "open_files": MAX_OPEN_FILES, "alarm_s": math.ceil(timeout_s) + 1,
                "allowed_modules": ALLOWED_MODULES, "max_output_bytes": MAX_OUTPUT_BYTES,
                "max_answer_chars": MAX_ANSWER_CHARS, "guards": bool(GUARDS)}
        jail = _POOL.take(isolated)
        try:
            reply, ready, timed_out = jail.run(spec, code, deadline)
        finally:
            jail.destroy()
        tail = jail.stderr_tail()
    finally:
        _SLOTS.release()
    duration = time.monotonic() - started
    if timed_out:
        raise SandboxTimeout(f"the program did not finish within its {timeout_s:g} s wall-clock deadline "
                             "and was killed; look for an endless loop or make it cheaper", tail)
    if reply is None:
        if not ready:
            raise SandboxCrashError("the sandbox did not start"
                                    + (" (bubblewrap failed; see the stderr tail)" if isolated else ""), tail)
        raise SandboxCrashError("the sandbox ended without reporting a result", tail)
    if not secrets.compare_digest(str(reply.get("nonce", "")), jail.nonce):
        raise SandboxCrashError("the sandbox's result did not carry its nonce; it was refused", tail)
    record, exit_info = reply.get("record"), reply.get("exit") or {}
    if not isinstance(record, dict) or "status" not in record:
        raise _crash(exit_info, cpu_s, timeout_s, tail)
    tail = (str(record.get("stderr", "")) + tail)[-MAX_STDERR_TAIL_CHARS:]
    status = record["status"]
    if status == "ok":
        try:
            answer = json.loads(str(record.get("answer", "null")))
        except (ValueError, RecursionError) as exc:
            raise SandboxCodeError(f"the answer could not be read back: {exc}", tail) from exc
        return SandboxResult(answer=answer, stdout=str(record.get("stdout", "")),
                             stdout_truncated=bool(record.get("stdout_truncated")), duration_s=duration,
                             network_isolated=isolated, isolated=isolated, seccomp=bool(record.get("seccomp")))
    error = _STATUS_ERRORS.get(status, SandboxCrashError)
    raise error(str(record.get("error") or f"the program failed (status {status!r})"), tail,
                str(record.get("stdout", "")))


async def arun_code(code: str, **limits) -> SandboxResult:
    """``run_code`` from async code, on the sandbox's own threads; several calls run concurrently and
    none of them takes a thread of the event loop's default executor."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return await loop.run_in_executor(_EXECUTOR, functools.partial(ctx.run, run_code, code, **limits))


def check_limits(timeout_s: float, cpu_s: int, memory_mb: int) -> None:
    """Raise ``ConfigError`` unless the limits are usable (callers check them before any work)."""
    if not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 600:
        raise ConfigError(f"timeout_s must be a number of seconds in (0, 600], got {timeout_s!r}")
    if isinstance(cpu_s, bool) or not isinstance(cpu_s, int) or not 1 <= cpu_s <= 600:
        raise ConfigError(f"cpu_s must be a whole number of CPU seconds in 1..600, got {cpu_s!r}")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or not 64 <= memory_mb <= 65536:
        raise ConfigError(f"memory_mb must be an int in 64..65536 (the interpreter itself needs ~30 MB), "
                          f"got {memory_mb!r}")


def allow_unisolated(allowed: bool | None) -> None:
    """Opt in (True) or out (False) of running code without a jail where none is available, for this
    process; None goes back to ``REASONFLOW_ALLOW_UNISOLATED_CODE``."""
    global _allow_override
    _allow_override = allowed


def unisolated_allowed() -> bool:
    """Whether the caller opted in to unisolated code (``allow_unisolated`` or the environment)."""
    if _allow_override is not None:
        return _allow_override
    return os.environ.get(ALLOW_UNISOLATED_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def available() -> bool:
    """True when programs can run here: in a jail, or unisolated by explicit opt-in."""
    return isolation().available or unisolated_allowed()


def describe() -> str:
    """One line for a start-up message: how programs will run on this host."""
    iso = isolation()
    if iso.available:
        return f"sandbox: bubblewrap jails ({iso.reason})"
    if unisolated_allowed():
        return (f"sandbox: WARNING: no isolation ({iso.reason}); running model-written code UNISOLATED "
                f"because {ALLOW_UNISOLATED_ENV} / --allow-unisolated-code opted in")
    return (f"sandbox: no isolation ({iso.reason}); programs that run code (pot) are refused. Install "
            f"bubblewrap (apt-get install bubblewrap) or opt in with {ALLOW_UNISOLATED_ENV}=1")


def warm() -> None:
    """Start the warm pool's spare jails now (they boot in the background)."""
    if available():
        _POOL.refill(isolation().available)


def shutdown() -> None:
    """Kill the spare jails (the pool starts fresh ones on the next call)."""
    _POOL.close()


@functools.lru_cache(maxsize=1)
def isolation() -> Isolation:
    """Probe once whether bubblewrap jails work here: the tool, user namespaces, and a real run."""
    if sys.platform != "linux":
        return Isolation(False, f"bubblewrap jails need Linux, this is {sys.platform}")
    tool = shutil.which("bwrap") or ("/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK) else None)
    if tool is None:
        return Isolation(False, "bubblewrap (bwrap) is not installed")
    try:
        _jail_argv(tool)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return Isolation(False, f"cannot lay out the jail's file system: {exc}", tool)
    jail = _Jail(True, tool)
    try:
        reply, ready, timed_out = jail.run(_probe_spec(), "answer = 6 * 7", time.monotonic() + _PROBE_TIMEOUT_S)
    except OSError as exc:
        return Isolation(False, f"bubblewrap could not start: {exc}", tool)
    finally:
        jail.destroy()
    record = (reply or {}).get("record") or {}
    if record.get("status") != "ok" or record.get("answer") != "42" or reply.get("nonce") != jail.nonce:
        why = "timed out" if timed_out else (jail.stderr_tail().strip().splitlines() or ["no result"])[-1]
        return Isolation(False, f"bubblewrap is installed but a jail does not run here ({why}); user "
                                "namespaces may be disabled", tool)
    seccomp = bool(record.get("seccomp"))
    return Isolation(True, f"{tool}, uid {JAIL_UID}, no network, no /proc, seccomp {'on' if seccomp else 'off'}",
                     tool, seccomp)


# --- the jail --------------------------------------------------------------------------------------

def require() -> bool:
    """True for a jail, False for an opted-in unisolated run; ``SandboxUnavailable`` otherwise (callers
    check before asking a model for code that could not run)."""
    iso = isolation()
    if iso.available:
        return True
    if unisolated_allowed():
        return False
    raise SandboxUnavailable(f"no process isolation for model-written code on this host: {iso.reason}. Install "
                             f"bubblewrap (apt-get install bubblewrap), or opt in to unisolated code with "
                             f"{ALLOW_UNISOLATED_ENV}=1")


def _probe_spec() -> dict:
    return {"cpu_s": 2, "memory_bytes": DEFAULT_SANDBOX_MEMORY_MB << 20, "file_bytes": _FILE_LIMIT_BYTES,
            "open_files": MAX_OPEN_FILES, "alarm_s": 10, "allowed_modules": ALLOWED_MODULES,
            "max_output_bytes": 1024, "max_answer_chars": 100}


def _interpreter() -> str:
    return os.path.realpath(sys.executable)


_PROBE = ("import sys\nfor m in sys.argv[1:]:\n    __import__(m)\nimport ctypes, json, resource, struct, signal\n"
          "ctypes.CDLL(None)\nprint('\\n'.join(sorted({l.split(None, 5)[5] for l in open('/proc/self/maps') "
          "if len(l.split(None, 5)) == 6 and l.split(None, 5)[5].startswith('/')})))\n")


@functools.lru_cache(maxsize=4)
def _jail_argv(tool: str) -> tuple[str, ...]:
    """The bwrap command line: namespaces, identity, and the read-only file system (computed once)."""
    python = _interpreter()
    mapped = subprocess.run([python, "-I", "-S", "-B", "-c", _PROBE, *ALLOWED_MODULES], env=CHILD_ENV,
                            capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S, check=True).stdout.split("\n")
    paths = {"stdlib": sysconfig.get_path("stdlib", vars={"installed_base": sys.base_prefix}),
             "platstdlib": sysconfig.get_path("platstdlib", vars={"platbase": sys.base_prefix})}
    trees = sorted({os.path.realpath(p) for p in paths.values() if p and os.path.isdir(p)})
    if not trees:
        raise ValueError("the standard library was not found")
    files = {python} | {os.path.realpath(p) for p in mapped if p.strip() and os.path.isfile(p)}
    files = {f for f in files if not any(f.startswith(t + os.sep) for t in trees)}
    loader = _elf_interpreter(python)
    aliases = _aliases(files)
    argv = [tool, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--clearenv", "--uid", str(JAIL_UID), "--gid", str(JAIL_UID), "--hostname", "sandbox"]
    for tree in trees:
        argv += ["--ro-bind", tree, tree]
    sites = {os.path.realpath(p) for p in (sysconfig.get_path(key, vars={"base": sys.base_prefix,
                                                                           "platbase": sys.base_prefix})
                                           for key in ("purelib", "platlib")) if p and os.path.isdir(p)}
    for site in sorted(sites):  # hide third-party packages installed into the base interpreter
        if any(site.startswith(t + os.sep) for t in trees):
            argv += ["--tmpfs", site, "--remount-ro", site]
    for path in sorted(files):
        argv += ["--ro-bind", path, path]
    for link, target in sorted(aliases.items()):  # the names the loader looks up (libffi.so.8 -> libffi.so.8.1.2)
        argv += ["--ro-bind", target, link]
    if loader and os.path.realpath(loader) != loader:
        argv += ["--ro-bind", os.path.realpath(loader), loader]
    argv += ["--dev", "/dev", "--size", str(JAIL_TMP_BYTES), "--tmpfs", "/tmp", "--ro-bind", str(CHILD_SCRIPT),
             JAIL_CHILD_PATH, "--remount-ro", "/", "--chdir", "/tmp",
             "--", python, "-I", "-S", "-B", JAIL_CHILD_PATH, "1", *ALLOWED_MODULES]
    return tuple(argv)


def _aliases(files: set[str]) -> dict[str, str]:
    """Symlinks beside each mapped library that point to it (its soname links), as link -> file."""
    found: dict[str, str] = {}
    for path in files:
        folder, name = os.path.split(path)
        if ".so" not in name:
            continue
        stem = name.split(".so")[0] + ".so"
        try:
            entries = [e for e in os.listdir(folder) if e.startswith(stem) and e != name]
        except OSError:
            continue
        for entry in entries:
            link = os.path.join(folder, entry)
            if os.path.islink(link) and os.path.realpath(link) == path:
                found[link] = path
    return found


def _elf_interpreter(path: str) -> str | None:
    """The PT_INTERP path of a 64-bit little-endian ELF executable (the dynamic loader), if any."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return None
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
            for i in range(phnum):
                kind, _, offset, _, _, size = struct.unpack_from("<IIQQQQ", table, i * phentsize)
                if kind == 3:  # PT_INTERP
                    handle.seek(offset)
                    return handle.read(size).rstrip(b"\0").decode()
    except (OSError, struct.error, UnicodeDecodeError):
        return None
    return None


class _Jail:
    """One jail (or one bare supervisor): booted on creation, runs one program, then destroyed."""

    def __init__(self, isolated: bool, tool: str | None = None):
        self.isolated = isolated
        self.nonce = secrets.token_hex(16)
        self.workdir: str | None = None
        self.stderr = tempfile.TemporaryFile()
        if isolated:
            argv, cwd = list(_jail_argv(tool or isolation().tool)), "/"
        else:
            self.workdir = tempfile.mkdtemp(prefix="reasonflow-sandbox-")
            argv, cwd = [_interpreter(), "-I", "-S", "-B", str(CHILD_SCRIPT), "1", *ALLOWED_MODULES], self.workdir
        try:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=CHILD_ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.stderr, close_fds=True, start_new_session=True)
        except OSError:
            self._cleanup()
            raise

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, spec: dict, code: str, deadline: float) -> tuple[dict | None, bool, bool]:
        """Send the job and the nonce; ``(reply, booted, timed_out)`` by the deadline."""
        job = json.dumps({"spec": spec, "code": code}, ensure_ascii=False).encode("utf-8")
        try:
            self.proc.stdin.write(b"%d\n" % len(job) + job + self.nonce.encode() + b"\n")
            self.proc.stdin.flush()
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass  # it died before reading: the reply says so
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        buffer, ready = b"", False
        while True:
            lines = buffer.split(b"\n")
            if lines[0].startswith(b"ready"):
                ready = True
                if len(lines) > 2:  # the reply line is complete
                    try:
                        reply = json.loads(lines[1])
                    except (ValueError, RecursionError):
                        return None, ready, False
                    return (reply if isinstance(reply, dict) else None), ready, False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, ready, True
            if not poller.poll(max(1, int(remaining * 1000))):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk or len(buffer) > _MAX_REPLY_BYTES:
                return None, ready or buffer.startswith(b"ready"), False
            buffer += chunk

    def destroy(self) -> None:
        """Kill the jail's process group (bwrap takes the namespace down with it) and reap it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(timeout=_KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            pass  # killed but stuck in the kernel: reaped later; the caller gets its answer now
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._cleanup()

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - 4 * MAX_STDERR_TAIL_CHARS))
            return self.stderr.read().decode("utf-8", "replace")[-MAX_STDERR_TAIL_CHARS:]
        except (OSError, ValueError):
            return ""

    def _cleanup(self) -> None:
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


class _Pool:
    """Spare jails, booted ahead. Every jail is started by one long-lived thread, because bubblewrap's
    --die-with-parent fires when the *thread* that started it ends."""

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._spares: list[_Jail] = []
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def _spawner(self) -> None:
        while True:
            isolated, future = self._requests.get()
            try:
                jail = _Jail(isolated)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                if future is not None:
                    future.set_exception(exc)
                continue
            if future is not None:
                future.set_result(jail)
                continue
            with self._lock:
                if len(self._spares) < SPARES:
                    self._spares.append(jail)
                    jail = None
            if jail is not None:
                jail.destroy()

    def _ask(self, isolated: bool, future: Future | None) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._spawner, name="reasonflow-sandbox-spawner", daemon=True)
                self._thread.start()
        self._requests.put((isolated, future))

    def take(self, isolated: bool) -> _Jail:
        """A booted (or booting) jail of this kind; a spare when one is idle. Refills the pool."""
        jail = None
        with self._lock:
            while self._spares:
                candidate = self._spares.pop()
                if candidate.isolated == isolated and candidate.alive():
                    jail = candidate
                    break
                stale = candidate
                threading.Thread(target=stale.destroy, daemon=True).start()
        if jail is None:
            future: Future = Future()
            self._ask(isolated, future)
            try:
                jail = future.result()
            except OSError as exc:
                raise SandboxCrashError(f"could not start the sandbox process ({exc}); check the process limits "
                                        "of this machine") from exc
        self.refill(isolated)
        return jail

    def refill(self, isolated: bool) -> None:
        with self._lock:
            missing = SPARES - len(self._spares)
        for _ in range(max(0, missing)):
            self._ask(isolated, None)

    def close(self) -> None:
        with self._lock:
            spares, self._spares = self._spares, []
        for jail in spares:
            jail.destroy()


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL._reset)


def _crash(exit_info: dict, cpu_s: int, timeout_s: float, tail: str) -> _SandboxFailure:
    """The error for a worker that died without writing its record."""
    sig = exit_info.get("signal")
    if sig in (signal.SIGXCPU, signal.SIGKILL):
        return SandboxTimeout(f"the program used up its {cpu_s} s CPU-time limit and was killed; look for an "
                              "endless loop or make it cheaper", tail)
    if sig == signal.SIGALRM:
        return SandboxTimeout(f"the program did not finish within its {timeout_s:g} s wall-clock deadline", tail)
    if sig == signal.SIGSYS:
        return SandboxForbidden("the program made a system call the sandbox refuses and was killed", tail)
    if "MemoryError" in tail:
        return SandboxMemoryError("the program ran out of memory", tail)
    try:
        how = f"signal {signal.Signals(sig).name}" if sig else f"status {exit_info.get('code')}"
    except ValueError:
        how = f"signal {sig}"
    return SandboxCrashError(f"the sandboxed program ended with {how} without reporting a result", tail)


def main() -> int:
    print(describe())
    return 0 if isolation().available else 1


if __name__ == "__main__":
    sys.exit(main())
