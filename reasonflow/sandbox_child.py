"""The jail side of ``reasonflow.sandbox``: a supervisor that forks one worker per program. Run by path.

How it runs: ``python -I -S -B sandbox_child.py`` inside the jail (``reasonflow.sandbox`` starts it
under bubblewrap, or bare when the user opted in to unisolated code). It imports nothing from
reasonflow. In order, the supervisor

1. imports the whitelisted modules (so the program's imports never touch the file system), makes
   itself undumpable and installs the base seccomp filter (no exec, sockets, ptrace, mounts,
   namespaces, keyrings, bpf, io_uring, ...), then says ``ready`` on fd 1 (a pipe to the parent);
2. reads one job from fd 0, exactly as many bytes as its header announces: the limits and the program;
3. creates a private pipe and forks the worker; only after the fork it reads the parent's nonce
   (so the worker's memory never holds it);
4. reads the worker's one record from the private pipe (bounded), reaps the worker, and writes one
   line to fd 1: ``{"nonce", "record", "exit"}``. Then it exits; a jail runs one program.

The worker, before the program's first line: closes the private pipe's read end, points fds 0-2 at
/dev/null (the program has no handle on the parent's channel), closes every other descriptor, sets
its rlimits (CPU, address space, open files, processes, file size, no core), installs a second
seccomp filter (no fork/clone, no signals but to itself), arms an alarm, then runs the program with
the Python-level guards (whitelisted imports, trimmed builtins, an audit hook) and writes its record.
The guards give typed errors for honest mistakes; the jail and seccomp are the boundary.

Not guaranteed here: seccomp is x86-64 only (elsewhere the filters are skipped and the record says so).
"""

import builtins
import ctypes
import json
import os
import resource
import signal
import struct
import sys

_FILENAME = "<program>"  # the file name tracebacks show for the program
_REFUSED_BUILTINS = ("open", "input", "breakpoint", "exec", "eval", "compile", "help", "exit", "quit")
_INTERNAL_MODULES = ("_strptime",)  # imported lazily by datetime.strptime; loaded up front
_MAX_JOB_BYTES = 1 << 20
_MAX_RECORD_BYTES = 1 << 20
_NONCE_BYTES = 33  # 32 hex digits and a newline

# --- seccomp (x86-64) ----------------------------------------------------------------------------
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_RET_ALLOW, _RET_KILL, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_EPERM, _ENOSYS = 1, 38
# Denied in the supervisor and (inherited) in the worker.
_BASE_DENY = {
    59: "execve", 322: "execveat", 41: "socket", 53: "socketpair", 101: "ptrace", 310: "process_vm_readv",
    311: "process_vm_writev", 312: "kcmp", 165: "mount", 166: "umount2", 155: "pivot_root", 161: "chroot",
    272: "unshare", 308: "setns", 428: "open_tree", 429: "move_mount", 430: "fsopen", 431: "fsconfig",
    432: "fsmount", 433: "fspick", 442: "mount_setattr", 250: "keyctl", 248: "add_key", 249: "request_key",
    321: "bpf", 298: "perf_event_open", 323: "userfaultfd", 425: "io_uring_setup", 426: "io_uring_enter",
    427: "io_uring_register", 175: "init_module", 313: "finit_module", 176: "delete_module",
    246: "kexec_load", 320: "kexec_file_load", 169: "reboot", 167: "swapon", 168: "swapoff", 163: "acct",
    179: "quotactl", 135: "personality", 303: "name_to_handle_at", 304: "open_by_handle_at",
    434: "pidfd_open", 424: "pidfd_send_signal", 438: "pidfd_getfd", 129: "rt_sigqueueinfo",
    297: "rt_tgsigqueueinfo",
}
# Denied in the worker on top: no new process or thread (clone3 answers ENOSYS, so libc falls back to
# clone, which is refused), no change to its limits or its session, and signals only to itself.
_WORKER_DENY = {57: "fork", 58: "vfork", 56: "clone", 160: "setrlimit", 302: "prlimit64", 112: "setsid",
                109: "setpgid"}
_WORKER_ENOSYS = {435: "clone3"}
_SELF_ONLY = (62, 200, 234)  # kill, tkill, tgkill: the first argument must be the worker's own pid


def _filter(deny, enosys=(), self_only=(), own_pid=0):
    """A classic-BPF seccomp program: check the arch, refuse x32, then the listed syscalls."""
    ins = []

    def op(code, k, jt=0, jf=0):
        ins.append(struct.pack("HBBI", code, jt, jf, k))

    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    op(ld, 4)  # seccomp_data.arch
    op(jeq, _AUDIT_ARCH_X86_64, 1, 0)
    op(ret, _RET_KILL)
    op(ld, 0)  # seccomp_data.nr
    op(jge, _X32_BIT, 0, 1)
    op(ret, _RET_ERRNO | _ENOSYS)
    for nr in sorted(deny):
        op(jeq, nr, 0, 1)
        op(ret, _RET_ERRNO | _EPERM)
    for nr in sorted(enosys):
        op(jeq, nr, 0, 1)
        op(ret, _RET_ERRNO | _ENOSYS)
    for nr in self_only:
        # nr == this one: load args[0] (low, then high word) and allow only our own pid.
        op(jeq, nr, 0, 6)
        op(ld, 16)
        op(jeq, own_pid, 0, 3)
        op(ld, 20)
        op(jeq, 0, 0, 1)
        op(ret, _RET_ALLOW)
        op(ret, _RET_ERRNO | _EPERM)
    op(ret, _RET_ALLOW)
    return b"".join(ins)


def _install(program):
    """PR_SET_NO_NEW_PRIVS, then PR_SET_SECCOMP(SECCOMP_MODE_FILTER). False where unsupported."""
    if os.uname().machine != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(program, len(program))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Prog(len(program) // 8, ctypes.addressof(buf))
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
    return True


def _undumpable():
    try:
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no ptrace or /proc/<pid>/mem by the same uid
    except (OSError, AttributeError):
        pass


# --- the program's guards (typed errors for honest mistakes; not the boundary) -------------------

class Forbidden(BaseException):
    """Raised into the program on a refused operation; a BaseException, so ``except Exception`` misses it."""


def _make_guards(allowed):
    """The audit hook and the builtins, with every list they read held in closures (not globals)."""
    violations = []
    blocked_events = frozenset({
        "open", "import", "builtins.input", "builtins.breakpoint", "sys.addaudithook", "sys.settrace",
        "sys.setprofile", "sys.unraisablehook", "setopencodehook", "code.__new__", "cpython.run_command",
        "cpython.run_file", "cpython.run_module"})
    blocked_prefixes = ("os.", "subprocess.", "socket.", "ctypes.", "shutil.", "pty.", "fcntl.", "mmap.",
                        "resource.", "signal.", "glob.", "tempfile.", "sqlite3.", "urllib.", "http.", "ftplib.",
                        "smtplib.", "poplib.", "imaplib.", "nntplib.", "telnetlib.", "webbrowser.", "syslog.",
                        "marshal.", "pickle.", "gc.")

    def forbid(message):
        violations.append(message)
        raise Forbidden(message)

    def audit(event, args):
        if event in blocked_events or event.startswith(blocked_prefixes):
            detail = f" {args[0]!r}" if args and isinstance(args[0], (str, bytes, int)) else ""
            forbid(f"{event}{detail} is not allowed in the sandbox")

    def refused(name):
        def refuse(*args, **kwargs):
            forbid(f"{name}() is not available in the sandbox")

        return refuse

    real_import = builtins.__import__
    admitted = frozenset(tuple(allowed) + _INTERNAL_MODULES)

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0 or name.partition(".")[0] not in admitted:
            forbid(f"import of {name!r} is not allowed; allowed modules: {', '.join(allowed)}")
        return real_import(name, globals, locals, fromlist, level)

    safe = dict(vars(builtins))
    for name in _REFUSED_BUILTINS:
        safe[name] = refused(name)
    safe["__import__"] = guarded_import
    return audit, safe, violations


class _Capped:
    """A text stream that keeps the first ``limit`` UTF-8 bytes written to it and drops the rest."""

    def __init__(self, limit):
        self.limit, self.size, self.parts, self.truncated = limit, 0, [], False

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        data = text.encode("utf-8", "replace")
        room = self.limit - self.size
        if len(data) > room:
            data, self.truncated = data[:max(room, 0)], True
        if data:
            self.parts.append(data)
            self.size += len(data)
        return len(text)

    def flush(self):
        pass

    def text(self):
        return b"".join(self.parts).decode("utf-8", "replace")


def _describe(exc, lines):
    """``Type: message (line N: source)`` for the innermost frame of the program, and the traceback."""
    frames, tb = [], exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == _FILENAME:
            source = lines[tb.tb_lineno - 1].strip() if 0 < tb.tb_lineno <= len(lines) else ""
            frames.append((tb.tb_lineno, code.co_name, source))
        tb = tb.tb_next
    message = f"{type(exc).__name__}: {exc}"[:500]
    trace = "".join(f'  File "{_FILENAME}", line {n}, in {name}\n    {src}\n' for n, name, src in frames[-10:])
    where = f" (line {frames[-1][0]}: {frames[-1][2][:120]})" if frames else ""
    return message + where, f"Traceback (program frames):\n{trace}{message}\n"


def _plain(value, depth=0):
    """The answer as plain JSON data: Fractions and Decimals become ints or floats, tuples lists."""
    import decimal
    import fractions
    import math
    import numbers

    if depth > 20:
        raise ValueError("the answer is nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, fractions.Fraction):
        return value.numerator if value.denominator == 1 else value.numerator / value.denominator
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else repr(number)
    if isinstance(value, numbers.Complex):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_plain(v, depth + 1) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    return repr(value)


def _run(spec, source, audit, safe, violations):
    lines = source.splitlines()
    try:
        code = compile(source, _FILENAME, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        where = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        return {"status": "syntax", "error": f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}{where}"}
    namespace = {"__name__": "__main__", "__builtins__": safe}
    sys.addaudithook(audit)
    outcome = {"status": "ok"}
    try:
        exec(code, namespace)
    except Forbidden as exc:
        outcome = {"status": "forbidden", "error": str(exc)}
    except MemoryError:
        outcome = {"status": "memory", "error": "MemoryError: the program ran out of memory"}
    except SystemExit:
        pass
    except BaseException as exc:  # the program's own failure: reported, never re-raised
        message, trace = _describe(exc, lines)
        outcome = {"status": "error", "error": message, "traceback": trace}
    if violations:
        return {"status": "forbidden", "error": str(violations[0])[:500]}
    if outcome["status"] != "ok":
        return outcome
    if "answer" not in namespace:
        return {"status": "no_answer", "error": "the program finished without setting a variable named answer"}
    try:
        text = json.dumps(_plain(namespace["answer"]), allow_nan=False)
    except MemoryError:
        return {"status": "memory", "error": "MemoryError while reporting the answer"}
    except BaseException as exc:
        return {"status": "bad_answer", "error": f"the answer could not be reported: {type(exc).__name__}: {exc}"[:500]}
    if len(text) > spec["max_answer_chars"]:
        return {"status": "bad_answer", "error": f"the answer is {len(text)} characters of JSON, over the "
                                                 f"limit of {spec['max_answer_chars']}"}
    return {"status": "ok", "answer": text}


# --- plumbing ------------------------------------------------------------------------------------

def _write(fd, data):
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd, size):
    parts, left = [], size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _read_header(fd):
    """The job header, ``LENGTH\\n``, read a byte at a time so nothing past it is buffered."""
    digits = b""
    while len(digits) < 12:
        byte = os.read(fd, 1)
        if not byte or byte == b"\n":
            break
        digits += byte
    return int(digits) if digits.isdigit() else -1


def _read_bounded(fd, limit):
    parts, size = [], 0
    while size <= limit:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)[:limit + 1]


def _limit(spec):
    setrlimit = resource.setrlimit
    setrlimit(resource.RLIMIT_CORE, (0, 0))
    setrlimit(resource.RLIMIT_CPU, (spec["cpu_s"], spec["cpu_s"] + 1))  # SIGXCPU, then SIGKILL
    setrlimit(resource.RLIMIT_AS, (spec["memory_bytes"], spec["memory_bytes"]))
    setrlimit(resource.RLIMIT_FSIZE, (spec["file_bytes"], spec["file_bytes"]))
    setrlimit(resource.RLIMIT_NOFILE, (spec["open_files"], spec["open_files"]))
    setrlimit(resource.RLIMIT_NPROC, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the file limit fails with EFBIG


def _worker(spec, source, write_fd, seccomp):
    """The forked child: limit itself, lock itself in, run the program, write one record."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, write_fd)
    os.closerange(write_fd + 1, 1 << 16)  # the program holds no descriptor but /dev/null and its record pipe
    _limit(spec)
    filtered = False
    if seccomp:
        filtered = _install(_filter(_WORKER_DENY, _WORKER_ENOSYS, _SELF_ONLY, os.getpid()))
    signal.alarm(spec["alarm_s"])  # the worker ends itself even if everything above it is gone
    audit, safe, violations = _make_guards(spec["allowed_modules"])
    if not spec.get("guards", True):  # the jail alone (the tests check that it holds without them)
        audit, safe = (lambda event, args: None), dict(vars(builtins))
    out, err = _Capped(spec["max_output_bytes"]), _Capped(spec["max_output_bytes"])
    sys.stdout, sys.stderr = out, err
    try:
        result = _run(spec, source, audit, safe, violations)
    except MemoryError:
        result = {"status": "memory", "error": "MemoryError: the program ran out of memory"}
    result.update(stdout=out.text(), stdout_truncated=out.truncated, seccomp=filtered,
                  stderr=(err.text() + result.pop("traceback", ""))[-4000:])
    try:
        data = json.dumps(result).encode("utf-8")
    except BaseException:  # noqa: BLE001 - the program may have left odd objects in the streams
        data = json.dumps({"status": "error", "error": "the result could not be encoded"}).encode()
    try:
        _write(write_fd, data)
    finally:
        os._exit(0)  # skip interpreter teardown: no finalizers of the program's objects run after this


_RECORD_KEYS = {"status": str, "answer": str, "error": str, "stdout": str, "stderr": str,
                "stdout_truncated": bool, "seccomp": bool}


def _clean(raw):
    """The worker's record, re-checked (the program could have written anything to its pipe)."""
    if len(raw) > _MAX_RECORD_BYTES:
        return None
    try:
        record = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    return {k: v for k, v in record.items() if k in _RECORD_KEYS and isinstance(v, _RECORD_KEYS[k])}


def main():
    # argv: SECCOMP (1 or 0) and the modules to preload.
    seccomp = sys.argv[1:2] != ["0"]
    job_allowed = ()
    # 1. Boot: whitelisted modules, then the base filter, then "ready".
    for name in tuple(sys.argv[2:]) + _INTERNAL_MODULES:
        try:
            __import__(name)
        except ImportError:
            pass
    _undumpable()
    filtered = _install(_filter(_BASE_DENY)) if seccomp else False
    _write(1, b"ready seccomp=%d\n" % int(bool(filtered)))
    # 2. One job.
    size = _read_header(0)
    if not 0 < size <= _MAX_JOB_BYTES:
        os._exit(3)
    try:
        job = json.loads(_read_exact(0, size).decode("utf-8"))
        spec, source = job["spec"], job["code"]
        job_allowed = tuple(spec["allowed_modules"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        os._exit(3)
    for name in job_allowed:  # normally preloaded already
        try:
            __import__(name)
        except ImportError:
            pass
    # 3. The worker, then the nonce.
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            _worker(spec, source, write_fd, filtered)
        finally:
            os._exit(70)
    os.close(write_fd)
    nonce = _read_exact(0, _NONCE_BYTES).decode("ascii", "replace").strip()
    # 4. The record, the exit status, one line out.
    raw = _read_bounded(read_fd, _MAX_RECORD_BYTES)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    exit_info = {"code": os.WEXITSTATUS(status)} if os.WIFEXITED(status) else {"signal": os.WTERMSIG(status)}
    record = _clean(raw) if raw else None
    _write(1, (json.dumps({"nonce": nonce, "record": record, "exit": exit_info}) + "\n").encode("utf-8"))
    os._exit(0)


if __name__ == "__main__":
    main()
