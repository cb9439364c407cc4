"""Parse rate of ChainOfThought on GSM8K: reasonflow's StructuredAdapter vs DSPy's default adapter.

    python evals/parse_rate.py --data-dir ../shared/data [--limit 50] [--concurrency 8] [--base-url URL]

Both run in the same process against the same endpoint and LM settings (temperature 0,
max_tokens 384); only the adapter differs. A question counts as parsed when the program returned an
``answer`` field without raising. Prints one line per adapter and a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import dspy

import reasonflow
from reasonflow.checking import check
from reasonflow.data import load


async def run_adapter(adapter, lm, examples, concurrency: int) -> dict:
    program = dspy.ChainOfThought("question -> answer: float")
    gate = asyncio.Semaphore(concurrency)
    parsed = correct = 0
    errors: dict[str, int] = {}

    async def one(ex):
        nonlocal parsed, correct
        async with gate:
            try:
                with reasonflow.session(lm, adapter=adapter):
                    pred = await program.acall(question=ex.question)
            except Exception as exc:  # every failure is a data point here, never a crash
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            parsed += 1
            correct += check("number", pred.answer, ex.answer)

    started = time.perf_counter()
    with reasonflow.track_usage() as usage:
        await asyncio.gather(*(one(ex) for ex in examples))
    return {"adapter": type(adapter).__name__, "questions": len(examples), "parsed": parsed,
            "parse_rate": parsed / len(examples), "correct": correct, "errors": errors,
            "completion_tokens": usage.completion_tokens, "wall_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--base-url")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    examples = load("gsm8k", split="test", data_dir=args.data_dir, limit=args.limit)
    lm = reasonflow.connect(args.base_url, temperature=0.0, max_tokens=384)
    results = []
    for adapter in (reasonflow.StructuredAdapter(), dspy.ChatAdapter()):
        res = asyncio.run(run_adapter(adapter, lm, examples, args.concurrency))
        results.append(res)
        print(f"{res['adapter']:>18}: parsed {res['parsed']}/{res['questions']} ({res['parse_rate']:.0%}), "
              f"correct {res['correct']}, errors {res['errors']}, {res['wall_s']} s", flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
