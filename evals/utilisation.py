"""Engine utilisation of SC@8 and ToT(b=5) on GSM8K: achieved generated tok/s divided by the engine's
peak at the same concurrency cap, both measured in this run.

    python evals/utilisation.py --data-dir ../shared/data [--questions 10] [--cap 32] [--base-url URL]

The cap is counted in sequences in flight (one request with n=8 is 8 sequences: vLLM batches them
like 8 requests) and enforced by the LM itself (``LMConfig(max_sequences=cap)``): all questions are
admitted at once and their requests wait at the gate, so the engine never sees more than ``cap``
sequences, and one question's barrier (a ToT round waiting for its slowest request) does not idle
the engine while other questions have work. The peak is
``peak_throughput`` at ``cap`` concurrent single-sequence requests, measured right before; the peak
under guided JSON decoding (which reasonflow's programs use) is printed beside it, since on a
2-core CPU the grammar's per-token work is part of what the engine can do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import dspy

import reasonflow
from reasonflow.data import load
from reasonflow.engine.throughput import peak_throughput
from reasonflow.lm import resolve_base_url


async def achieved(program, examples, lm) -> dict:
    errors = 0

    async def one(ex):
        nonlocal errors
        try:
            await program.acall(question=ex.question)
        except reasonflow.ReasonflowError:
            errors += 1

    started = time.perf_counter()
    with dspy.context(lm=lm, adapter=reasonflow.StructuredAdapter()), reasonflow.track_usage() as usage:
        await asyncio.gather(*(one(ex) for ex in examples))
    wall = time.perf_counter() - started
    return {"questions": len(examples), "wall_s": round(wall, 1),
            "completion_tokens": usage.completion_tokens, "lm_calls": usage.calls, "errors": errors,
            "tok_s": round(usage.completion_tokens / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--base-url")
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--cap", type=int, default=32, help="sequences in flight")
    args = parser.parse_args()
    url = resolve_base_url(args.base_url)
    lm = reasonflow.connect(url, temperature=0.0, config=reasonflow.LMConfig(max_sequences=args.cap))
    examples = load("gsm8k", data_dir=args.data_dir, limit=args.questions)
    peak = asyncio.run(peak_throughput(url, args.cap))
    guided = asyncio.run(peak_throughput(url, args.cap, guided=True))
    print(f"peak at {args.cap} sequences in flight: {peak.tok_s:.1f} tok/s "
          f"(with guided JSON decoding: {guided.tok_s:.1f} tok/s)", flush=True)
    runs = {"sc@8": reasonflow.program("gsm8k.sc@8"), "tot(b=5)": reasonflow.program("gsm8k.tot@5")}
    report = {"cap": args.cap, "peak": peak.to_dict(), "guided_peak": guided.to_dict(), "programs": {}}
    for name, program in runs.items():
        result = asyncio.run(achieved(program, examples, lm))
        result["utilisation"] = round(result["tok_s"] / peak.tok_s, 3) if peak.tok_s else None
        result["utilisation_vs_guided_peak"] = round(result["tok_s"] / guided.tok_s, 3) if guided.tok_s else None
        report["programs"][name] = result
        print(f"{name:>9}: {result['tok_s']:7.1f} tok/s  utilisation {result['utilisation']:.2f} "
              f"(vs guided peak {result['utilisation_vs_guided_peak']:.2f})  "
              f"({result['completion_tokens']} tokens, {result['lm_calls']} calls, {result['wall_s']} s)", flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
