"""The child side of ``reasonflow.sandbox``: a bootstrap run by path, never imported.

How it runs: ``python -I -S -B sandbox_child.py SPEC_JSON`` with the program in ``program.py`` in its
working directory (``reasonflow.sandbox.run_code`` sets all of this up). In order, it

1. limits itself (CPU seconds, address space, file size, open files, processes, no core dumps, an
   alarm just past the wall-clock deadline), before anything else runs;
2. imports the whitelisted modules, so that the program's imports never touch the file system;
3. reads and compiles the program;
4. installs an audit hook that refuses files, processes, sockets, new imports, ``input`` and more;
5. runs the program with a fresh globals dict whose builtins lack ``open``, ``input``, ``exec``,
   ``eval``, ``compile`` and ``breakpoint`` and whose ``__import__`` admits only the whitelist, with
   ``print`` captured into a capped buffer;
6. writes exactly one JSON line to fd 1: ``status`` (ok, no_answer, syntax, error, bad_answer, memory,
   forbidden), ``answer`` (the ``answer`` variable as JSON text), ``stdout`` and ``error``.

It imports nothing from reasonflow. What it does not guarantee is listed in ``reasonflow.sandbox``:
the hook and the builtins are Python-level guards, not a security boundary.
"""

import builtins
import json
import os
import resource
import signal
import sys

_PROGRAM_FILE = "program.py"
_FILENAME = "<program>"  # the file name tracebacks show for the program
_REFUSED_BUILTINS = ("open", "input", "breakpoint", "exec", "eval", "compile", "help", "exit", "quit")
_INTERNAL_MODULES = ("_strptime",)  # imported lazily by datetime.strptime; loaded up front
_BLOCKED_EVENTS = {"open", "import", "builtins.input", "builtins.breakpoint", "sys.addaudithook",
                   "sys.settrace", "sys.setprofile", "sys.unraisablehook", "setopencodehook",
                   "code.__new__", "cpython.run_command", "cpython.run_file", "cpython.run_module"}
_BLOCKED_PREFIXES = ("os.", "subprocess.", "socket.", "ctypes.", "shutil.", "pty.", "fcntl.", "mmap.",
                     "resource.", "signal.", "glob.", "tempfile.", "sqlite3.", "urllib.", "http.",
                     "ftplib.", "smtplib.", "poplib.", "imaplib.", "nntplib.", "telnetlib.", "webbrowser.",
                     "syslog.", "winreg.", "msvcrt.", "_winapi.", "marshal.", "pickle.", "gc.")

_violations = []  # what the program tried, for the report (the hook refuses regardless)


class Forbidden(BaseException):
    """Raised into the program on a refused operation; a BaseException, so ``except Exception`` misses it."""


def _forbid(message):
    _violations.append(message)
    raise Forbidden(message)


def _limit(spec):
    setrlimit = resource.setrlimit
    setrlimit(resource.RLIMIT_CORE, (0, 0))
    setrlimit(resource.RLIMIT_CPU, (spec["cpu_s"], spec["cpu_s"] + 1))  # SIGXCPU, then SIGKILL
    setrlimit(resource.RLIMIT_AS, (spec["memory_bytes"], spec["memory_bytes"]))
    setrlimit(resource.RLIMIT_FSIZE, (spec["file_bytes"], spec["file_bytes"]))
    setrlimit(resource.RLIMIT_NOFILE, (spec["open_files"], spec["open_files"]))
    setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no fork (not enforced for root)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the file limit fails with EFBIG
    signal.alarm(spec["alarm_s"])  # the child ends itself even if the parent is gone


def _audit(event, args):
    if event in _BLOCKED_EVENTS or event.startswith(_BLOCKED_PREFIXES):
        detail = f" {args[0]!r}" if args and isinstance(args[0], (str, bytes, int)) else ""
        _forbid(f"{event}{detail} is not allowed in the sandbox")


def _refused(name):
    def refuse(*args, **kwargs):
        _forbid(f"{name}() is not available in the sandbox")

    return refuse


def _safe_builtins(allowed):
    real_import = builtins.__import__
    admitted = frozenset(allowed + _INTERNAL_MODULES)  # C code imports through the caller's builtins

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level != 0 or name.partition(".")[0] not in admitted:
            _forbid(f"import of {name!r} is not allowed; allowed modules: {', '.join(allowed)}")
        return real_import(name, globals, locals, fromlist, level)

    safe = dict(vars(builtins))
    for name in _REFUSED_BUILTINS:
        safe[name] = _refused(name)
    safe["__import__"] = guarded_import
    return safe


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


def _run(spec, source):
    lines = source.splitlines()
    try:
        code = compile(source, _FILENAME, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        where = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        return {"status": "syntax", "error": f"{type(exc).__name__}: {getattr(exc, 'msg', exc)}{where}"}
    namespace = {"__name__": "__main__", "__builtins__": _safe_builtins(tuple(spec["allowed_modules"]))}
    sys.addaudithook(_audit)
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
    if _violations:
        return {"status": "forbidden", "error": _violations[0]}
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


def _write(fd, data):
    while data:
        data = data[os.write(fd, data):]


def main():
    spec = json.loads(sys.argv[1])
    _limit(spec)
    for name in tuple(spec["allowed_modules"]) + _INTERNAL_MODULES:
        __import__(name)
    with open(_PROGRAM_FILE, encoding="utf-8") as handle:
        source = handle.read()
    out, err = _Capped(spec["max_output_bytes"]), _Capped(spec["max_output_bytes"])
    sys.stdout, sys.stderr = out, err  # stdin stays /dev/null; input() is refused by the hook anyway
    try:
        result = _run(spec, source)
    except MemoryError:
        result = {"status": "memory", "error": "MemoryError: the program ran out of memory"}
    result.update(stdout=out.text(), stdout_truncated=out.truncated)
    tail = err.text() + result.get("traceback", "")
    if tail:
        _write(2, tail.encode("utf-8", "replace"))
    _write(1, (json.dumps(result) + "\n").encode("utf-8"))
    os._exit(0)  # skip interpreter teardown: no finalizers of the program's objects run after this


if __name__ == "__main__":
    main()
