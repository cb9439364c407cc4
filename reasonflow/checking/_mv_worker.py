"""Child process behind ``reasonflow.checking.math_equal``: Math-Verify with its SIGALRM timeouts off.

What it does: reads JSON lines ``{"pred": str, "gold": str}`` on stdin and answers each with one line
``{"equal": bool}`` (plus ``"error"`` when Math-Verify raised). Its first line is ``{"ready": true}``
once Math-Verify is imported, or ``{"fatal": "..."}`` when it cannot be.

How to run: not by hand. ``reasonflow.checking._pool`` starts it as
``python -I _mv_worker.py '{"sys_path": [...], "memory_bytes": N}'``. ``-I`` keeps this file's folder
off ``sys.path`` (its siblings must not shadow modules that sympy imports); the parent's ``sys.path``
comes in the argument instead. It imports nothing from reasonflow, so it starts in about a second.

What it does not guarantee: no time bound of its own; the parent kills it when a check overruns.
It caps its address space (RLIMIT_AS), so a runaway computation ends in MemoryError, answered as
``{"equal": false}``, and it exits when its parent dies or closes stdin.
"""

import json
import os
import sys
import threading
import time

PARENT_POLL_S = 1.0


def _exit_when_orphaned(parent_pid: int) -> None:
    # A check stuck in sympy would otherwise outlive a parent that was killed before it could kill us.
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(0)


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
        import resource

        limit = int(config["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    try:
        from math_verify import parse, verify
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises a typed error
        _reply(out, {"fatal": f"cannot import math_verify: {exc!r}"})
        return 1
    _reply(out, {"ready": True})
    for line in sys.stdin:
        try:
            request = json.loads(line)
            _reply(out, {"equal": _equal(parse, verify, request["pred"], request["gold"])})
        except Exception as exc:  # noqa: BLE001 - MemoryError, RecursionError, sympy errors: unequal
            _reply(out, {"equal": False, "error": repr(exc)[:500]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
