"""Child process behind ``reasonflow.checking.math_equal``: Math-Verify with its SIGALRM timeouts off.

What it does: reads JSON lines ``{"pred": str, "gold": str, "cpu_s": float}`` on stdin and answers
each with one line ``{"equal": bool}`` (plus ``"error"`` when Math-Verify raised, and
``"timeout": true`` when the check used up ``cpu_s`` seconds of this process's CPU time). Its first
line is ``{"ready": true}`` once Math-Verify is imported, or ``{"fatal": "..."}`` when it cannot be.
The budget is CPU time (``ITIMER_PROF``), not wall time, so a verdict does not depend on how loaded
the machine is: the same input gets the same answer whether it runs alone or beside eight others.

How to run: not by hand. ``reasonflow.checking._pool`` starts it as
``python -I _mv_worker.py '{"sys_path": [...], "memory_bytes": N}'``. ``-I`` keeps this file's folder
off ``sys.path`` (its siblings must not shadow modules that sympy imports); the parent's ``sys.path``
comes in the argument instead. It imports nothing from reasonflow, so it starts in about a second.

What it does not guarantee: wall time is the parent's to bound (it kills us when a check overruns).
As a backstop the kernel bounds each check's CPU time (RLIMIT_CPU, ``cpu_s`` plus a margin: SIGXCPU
ends the process even while sympy holds the GIL, say after the parent itself was killed) and the
address space (RLIMIT_AS: a runaway allocation ends in MemoryError, answered as ``{"equal": false}``).
It exits when stdin closes.
"""

import json
import resource
import signal
import sys

CPU_MARGIN_S = 2  # RLIMIT_CPU counts whole seconds; the parent's wall-clock kill normally comes first


def _cap_cpu(seconds: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + CPU_MARGIN_S
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


class CheckTimeout(BaseException):
    """The check used up its CPU budget. A BaseException, so Math-Verify's ``except Exception`` misses it."""


def _on_budget(signum, frame):
    raise CheckTimeout()


def _reply(out, message: dict) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def _equal(parse, verify, pred: str, gold: str) -> bool:
    gold_parsed = parse(gold, parsing_timeout=None)
    pred_parsed = parse(pred, parsing_timeout=None)
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def main() -> int:
    config = json.loads(sys.argv[1])
    sys.path[:] = config["sys_path"]
    out, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the protocol
    if config.get("memory_bytes"):
        limit = int(config["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        from math_verify import parse, verify
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises a typed error
        _reply(out, {"fatal": f"cannot import math_verify: {exc!r}"})
        return 1
    signal.signal(signal.SIGPROF, _on_budget)
    _reply(out, {"ready": True})
    for line in sys.stdin:
        try:
            request = json.loads(line)
            cpu_s = float(request["cpu_s"])
            _cap_cpu(cpu_s)
            signal.setitimer(signal.ITIMER_PROF, cpu_s)
            try:
                equal = _equal(parse, verify, request["pred"], request["gold"])
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
            _reply(out, {"equal": equal})
        except CheckTimeout:
            _reply(out, {"equal": False, "timeout": True})
        except Exception as exc:  # noqa: BLE001 - MemoryError, RecursionError, sympy errors: unequal
            _reply(out, {"equal": False, "error": repr(exc)[:500]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
