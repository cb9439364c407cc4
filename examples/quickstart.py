"""ChainOfThought on a few GSM8K questions against the embedded engine, printing each answer.

    python examples/quickstart.py --data-dir ../shared/data --limit 5 [--base-url URL]

Questions run concurrently. For each: the gold answer, the model's answer, whether it parsed, and
its tokens.
"""

from __future__ import annotations

import argparse
import asyncio

import dspy

import reasonflow
from reasonflow.data import load


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--base-url")
    parser.add_argument("--limit", type=int, default=5)
    args = parser.parse_args()

    reasonflow.configure(args.base_url, max_tokens=384)
    program = dspy.ChainOfThought("question -> answer: float")
    examples = load("gsm8k", data_dir=args.data_dir, limit=args.limit)

    async def solve(ex):
        with reasonflow.track_usage() as usage:
            try:
                return ex, (await program.acall(question=ex.question)).answer, None, usage
            except reasonflow.ReasonflowError as exc:
                return ex, None, exc, usage

    print(f"{'#':>2}  {'gold':>8}  {'answer':>10}  parsed  tokens  question")
    for i, (ex, answer, err, usage) in enumerate(await asyncio.gather(*map(solve, examples))):
        shown = "-" if answer is None else f"{answer:g}"
        print(f"{i:>2}  {ex.answer:>8}  {shown:>10}  {'yes' if err is None else 'NO':>6}  "
              f"{usage.total_tokens:>6}  {ex.question[:60]}...")
        if err is not None:
            print(f"    {type(err).__name__}: {err}")


if __name__ == "__main__":
    asyncio.run(main())
