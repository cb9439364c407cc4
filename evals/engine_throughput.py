"""Print the engine's generated tokens per second at concurrency 1, 8 and 32 (or --concurrency).

    python evals/engine_throughput.py [--base-url URL] [--concurrency 1,8,32] [--max-tokens 64]

With no --base-url it uses REASONFLOW_BASE_URL, the engine `reasonflow engine up` started, or starts
the embedded engine for the run. The peak at a concurrency is what utilisation figures divide by.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from reasonflow.engine.throughput import peak_throughput
from reasonflow.lm import resolve_base_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    url = resolve_base_url(args.base_url)
    rows = []
    for c in (int(x) for x in args.concurrency.split(",")):
        result = asyncio.run(peak_throughput(url, c, max_tokens=args.max_tokens, rounds=args.rounds))
        rows.append(result.to_dict())
        if not args.json:
            print(f"concurrency {c:>3}: {result.tok_s:7.1f} tok/s  ({result.completion_tokens} tokens, "
                  f"{result.requests} requests, {result.wall_s:.1f} s)", flush=True)
    if args.json:
        print(json.dumps({"base_url": url, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
