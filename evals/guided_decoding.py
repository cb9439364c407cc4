"""Compare vLLM's structured-output backends on the schemas reasonflow sends: throughput and parse rate.

    python evals/guided_decoding.py --data-dir ../shared/data [--backends xgrammar,guidance,...]
        [--questions 16] [--puzzles 4] [--concurrency 16] [--json]

For each backend it starts its own embedded engine (one at a time, each stopped before the next) with
``EngineConfig(guided_backend=...)`` and measures, in that engine:

- the raw peak: completion tok/s with ``concurrency`` free-text requests in flight (no grammar);
- the guided peak: the same with a long JSON string field, so the grammar's per-token cost shows;
- ``gsm8k.cot`` over GSM8K train questions: the bounded JSON schema every program sends; a question
  counts as parsed when the program returned an answer without raising;
- ``game24.tot`` over Game of 24 train puzzles: one per-state ``enum`` schema per propose request
  (a new grammar for every state), wall time and proposals outside the action space.

The guided/raw ratio is the grammar's cost. The cheapest backend that keeps the parse rate at 100% is
the one to choose (``DEFAULT_GUIDED_BACKEND``). vLLM caches compiled xgrammar grammars per schema in
the engine (``VLLM_XGRAMMAR_CACHE_MB``, on by default), so repeated schemas compile once.

Not guaranteed: figures are from one shared machine; compare the ratios inside one run. A backend
that cannot start or rejects the schemas is reported with its error, not skipped silently.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import dspy

import reasonflow
from reasonflow.config import GUIDED_BACKENDS, EngineConfig
from reasonflow.data import load
from reasonflow.engine import Engine
from reasonflow.engine.throughput import peak_throughput


async def run_program(name: str, examples, lm, concurrency: int) -> dict:
    """One program over ``examples``: parsed answers, errors by type, wall time and tokens."""
    program = reasonflow.program(name)
    gate = asyncio.Semaphore(concurrency)
    parsed, outside, proposals, errors = 0, 0, 0, {}

    async def one(ex):
        nonlocal parsed, outside, proposals
        async with gate:
            try:
                with dspy.context(lm=lm, adapter=reasonflow.StructuredAdapter()):
                    pred = await program.acall(question=ex.question)
            except Exception as exc:  # every failure is a data point here, never a crash
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            # cot: an answer is a parsed completion; a search that runs to its end has parsed every call
            parsed += getattr(pred, "answer", None) is not None or getattr(pred, "trace", None) is not None
            trace = getattr(pred, "trace", None)
            if trace is not None:
                nodes = [d for _, d in trace.graph.nodes(data=True) if d.get("depth", 0) > 0]
                proposals += len(nodes)
                outside += sum(d.get("reason") == "outside the action space" for d in nodes)

    started = time.perf_counter()
    with reasonflow.track_usage() as usage:
        await asyncio.gather(*(one(ex) for ex in examples))
    wall = time.perf_counter() - started
    return {"program": name, "examples": len(examples), "parsed": parsed, "parse_rate": parsed / max(len(examples), 1),
            "errors": errors, "completion_tokens": usage.completion_tokens, "wall_s": round(wall, 1),
            "tok_s": round(usage.completion_tokens / wall, 1) if wall else 0.0,
            **({"proposals": proposals, "outside_action_space": outside} if name.startswith("game24") else {})}


async def measure(engine: Engine, questions, puzzles, concurrency: int) -> dict:
    raw = await peak_throughput(engine.base_url, concurrency)
    guided = await peak_throughput(engine.base_url, concurrency, guided=True)
    lm = reasonflow.connect(engine.base_url, temperature=0.0)
    cot = await run_program("gsm8k.cot", questions, lm, concurrency)
    tot = await run_program("game24.tot", puzzles, lm, concurrency)
    return {"raw_tok_s": round(raw.tok_s, 1), "guided_tok_s": round(guided.tok_s, 1),
            "guided_over_raw": round(guided.tok_s / raw.tok_s, 3) if raw.tok_s else None, "cot": cot, "tot": tot}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(GUIDED_BACKENDS))
    parser.add_argument("--data-dir")
    parser.add_argument("--questions", type=int, default=16, help="GSM8K train questions for gsm8k.cot")
    parser.add_argument("--puzzles", type=int, default=4, help="Game of 24 train puzzles for game24.tot")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    questions = load("gsm8k", split="train", data_dir=args.data_dir, limit=args.questions)
    puzzles = load("game24", split="train", data_dir=args.data_dir, limit=args.puzzles)
    results = []
    for backend in args.backends.split(","):
        started = time.perf_counter()
        try:
            with Engine(config=EngineConfig(guided_backend=backend)) as engine:
                start_s = time.perf_counter() - started
                row = {"backend": backend, "start_s": round(start_s, 1),
                       **asyncio.run(measure(engine, questions, puzzles, args.concurrency))}
        except Exception as exc:  # a backend that fails is a result too
            row = {"backend": backend, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        results.append(row)
        if not args.json:
            if "error" in row:
                print(f"{backend:>18}: {row['error']}", flush=True)
            else:
                cot, tot = row["cot"], row["tot"]
                print(f"{backend:>18}: raw {row['raw_tok_s']:6.1f} tok/s, guided {row['guided_tok_s']:6.1f} "
                      f"({row['guided_over_raw']:.2f} of raw) | gsm8k.cot parsed {cot['parsed']}/{cot['examples']} "
                      f"{cot['tok_s']:6.1f} tok/s {cot['wall_s']:5.1f} s | game24.tot {tot['wall_s']:5.1f} s, "
                      f"{tot['outside_action_space']}/{tot['proposals']} outside, errors {tot['errors'] or 0}",
                      flush=True)
    if args.json:
        print(json.dumps({"concurrency": args.concurrency, "results": results}, indent=2))


if __name__ == "__main__":
    main()
