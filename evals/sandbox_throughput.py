"""Programs per second through ``reasonflow.sandbox``: one at a time, and several at once.

    python evals/sandbox_throughput.py --programs 40 [--concurrency 1,8] [--warmup 4] [--spares N]

Runs the same short PoT-style program (fractions and arithmetic, as gsm8k.pot writes) ``--programs``
times for each concurrency level, through ``arun_code`` (what ProgramOfThought calls), and prints
programs/s with the mean and p95 latency, plus how the programs ran (``isolated``: a bubblewrap jail).
It uses only ``run_code``/``arun_code``, so it also measures an older reasonflow: run it with
``PYTHONPATH`` pointing at that checkout to get the "before" figure on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from reasonflow import sandbox
from reasonflow.sandbox import arun_code, run_code

PROGRAM = """from fractions import Fraction
eggs_per_day = 16
eaten = 3 + 4
price = Fraction(2, 1)
answer = (eggs_per_day - eaten) * price
"""


async def measure(programs: int, concurrency: int) -> dict:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one() -> None:
        async with gate:
            started = time.perf_counter()
            result = await arun_code(PROGRAM)
            latencies.append(time.perf_counter() - started)
            assert result.answer == 18, result

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(programs)))
    wall = time.perf_counter() - started
    latencies.sort()
    return {"concurrency": concurrency, "programs": programs, "seconds": round(wall, 3),
            "programs_per_s": round(programs / wall, 1), "mean_latency_ms": round(1000 * statistics.mean(latencies), 1),
            "p95_latency_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=40)
    parser.add_argument("--concurrency", default="1,8", help="comma-separated levels")
    parser.add_argument("--warmup", type=int, default=4, help="programs run first, not measured")
    parser.add_argument("--spares", type=int, default=None, help="warm-pool size (default: sandbox.SPARES)")
    args = parser.parse_args()
    if args.spares is not None:
        sandbox.SPARES = args.spares
    first = run_code(PROGRAM)
    for _ in range(args.warmup):
        run_code(PROGRAM)
    mode = {"isolated": getattr(first, "isolated", False), "seccomp": getattr(first, "seccomp", False),
            "spares": getattr(sandbox, "SPARES", None)}
    rows = [asyncio.run(measure(args.programs, int(c))) for c in args.concurrency.split(",")]
    print(f"{'concurrency':>11} {'programs':>8} {'seconds':>8} {'programs/s':>10} {'mean ms':>8} {'p95 ms':>8}")
    for r in rows:
        print(f"{r['concurrency']:>11} {r['programs']:>8} {r['seconds']:>8} {r['programs_per_s']:>10} "
              f"{r['mean_latency_ms']:>8} {r['p95_latency_ms']:>8}")
    print(json.dumps({**mode, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
