"""Print where an embedded engine start goes: spawn, imports, engine and worker processes, model load,
compile, warm-up, API server, first token.

    python evals/engine_start.py [--model NAME] [--cold] [--json] [-- VLLM ARGS]
    python evals/engine_start.py -- -O3        # with torch.compile (EngineConfig(compile=True)); the default is eager

It starts ``reasonflow.Engine`` as ``reasonflow engine up`` would and follows the engine's log while
it starts, stamping the moment each milestone's line first appears (``MILESTONES``); a phase is the
time from one milestone to the next, in the order they happened. "ready" is when ``Engine.start``
returned: ``/health`` answered and a 1-token completion came back. vLLM's own "took N s" lines are
printed as well. ``--cold`` gives the engine empty vLLM and inductor caches (a first start); without
it the caches are the usual ones (a warm start, the figure users wait for). The engine is stopped at
the end.

Not guaranteed: milestones are recognised by vLLM's log wording, so a vLLM upgrade can hide some
(they print as "not seen" and their time falls into the next phase); readiness is polled once a
second, so "ready" can be up to a second late.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path

# (milestone, pattern): the first log line matching the pattern marks the milestone.
MILESTONES = (
    ("api process imported", r"vLLM API server version"),
    ("engine process started", r"Initializing a V1 LLM engine|EngineCore.*(started|pid)"),
    ("worker loading the model", r"Starting to load model|Loading model from"),
    ("model loaded", r"Model loading took|Loading weights took"),
    ("compiled", r"torch\.compile takes|compiled graph.*cache|Compiling a graph .* takes"),
    ("warmed up", r"init engine \(profile, create kv cache, warmup model\) took"),
    ("api server up", r"Application startup complete|Uvicorn running"),
)
SELF_REPORTED = re.compile(r"(took|takes)\s+([0-9.]+)\s*(s\b|sec|seconds)", re.I)


def milestones(lines: list[tuple[float, str]], ready_s: float) -> list[dict]:
    """Each milestone seen in ``(seconds since start, log line)`` pairs, then "ready", in time order,
    with the phase that ended at it (the time since the milestone before)."""
    seen = []
    for name, pattern in MILESTONES:
        hit = next((t for t, line in lines if re.search(pattern, line)), None)
        if hit is not None:
            seen.append((hit, name))
    seen.sort()
    seen.append((ready_s, "ready (first token)"))
    out, previous = [], 0.0
    for t, name in seen:
        out.append({"milestone": name, "at_s": round(t, 2), "phase_s": round(t - previous, 2)})
        previous = t
    return out


def self_reported(lines: list[tuple[float, str]]) -> list[str]:
    """vLLM's own duration lines ("Model loading took 0.5 GiB and 1.2 seconds"), trimmed."""
    return [line.strip()[-160:] for _, line in lines if SELF_REPORTED.search(line)]


class LogFollower(threading.Thread):
    """Reads ``path`` as it grows (once it exists), stamping each line with seconds since ``t0``."""

    def __init__(self, path: Path, t0: float):
        super().__init__(daemon=True, name="engine-log-follower")
        self.path, self.t0 = path, t0
        self.lines: list[tuple[float, str]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.path.exists() and not self.done.is_set():
            time.sleep(0.05)
        if self.done.is_set():
            return
        with open(self.path, errors="replace") as f:
            while True:
                line = f.readline()
                if line:
                    self.lines.append((time.perf_counter() - self.t0, line))
                elif self.done.is_set():
                    return
                else:
                    time.sleep(0.05)


def measure(model: str | None, cold: bool, vllm_args: tuple[str, ...] = ()) -> dict:
    from reasonflow.config import home_dir
    from reasonflow.engine import Engine
    from reasonflow.engine.server import free_port

    if cold:  # the child inherits this process's environment
        cache = tempfile.mkdtemp(prefix="reasonflow-cold-")
        os.environ.update(VLLM_CACHE_ROOT=cache, TORCHINDUCTOR_CACHE_DIR=str(Path(cache) / "inductor"))
    port = free_port()
    engine = Engine(model, port=port, extra_args=tuple(vllm_args))
    t0 = time.perf_counter()
    follower = LogFollower(home_dir() / "logs" / f"engine-{port}.log", t0)
    follower.start()
    try:
        engine.start()
        ready = time.perf_counter() - t0
    finally:
        engine.stop()
        follower.done.set()
        follower.join(5)
    spawned = follower.lines[0][0] if follower.lines else None
    return {"kind": "cold" if cold else "warm", "vllm_args": list(vllm_args), "ready_s": round(ready, 2),
            "first_log_line_s": round(spawned, 2) if spawned is not None else None,
            "milestones": milestones(follower.lines, ready), "not_seen": _not_seen(follower.lines),
            "self_reported": self_reported(follower.lines)}


def _not_seen(lines) -> list[str]:
    return [name for name, pattern in MILESTONES if not any(re.search(pattern, line) for _, line in lines)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="engine model (default: the embedded one)")
    parser.add_argument("--cold", action="store_true", help="start with empty vLLM and inductor caches")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("vllm_args", nargs="*", help="after --: passed to vLLM as they are (EngineConfig.extra_args)")
    args = parser.parse_args()
    result = measure(args.model, args.cold, tuple(args.vllm_args))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['kind']} start{' with ' + ' '.join(args.vllm_args) if args.vllm_args else ''}: ready after {result['ready_s']:.1f} s "
          f"(first engine log line at {result['first_log_line_s']} s)")
    for row in result["milestones"]:
        print(f"  {row['milestone']:<28} at {row['at_s']:7.2f} s   phase {row['phase_s']:6.2f} s")
    if result["not_seen"]:
        print(f"  not seen in the log: {', '.join(result['not_seen'])}")
    for line in result["self_reported"]:
        print(f"  vLLM: {line}")


if __name__ == "__main__":
    main()
