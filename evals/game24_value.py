"""How good is a model's Game of 24 value? Accuracy and ranking on exactly labelled test states.

    python evals/game24_value.py --data-dir ../shared/data [--model game24-tot] [--states 400] [--base-url URL]
    python evals/game24_value.py --data-dir ../shared/data --per-class 100   # balanced: 100 of each class per depth
    python evals/game24_value.py --data-dir ../shared/data --per-class 100 --offset 800   # train rows 801-900: fit, a dev check

States come from the benchmark rows 901-1000 (never trained on; ``--offset`` below 900 reads train rows
instead, which measures how well the value fits its training puzzles: what to compare adapters on
without looking at the benchmark rows): random 1- and 2-move paths from each
puzzle, seeded, labelled reachable or not by exhaustive search. By default they come as random moves
meet them (after two moves about 2% are reachable, so an AUC there rests on a handful of states);
``--per-class N`` draws N distinct reachable and N distinct dead states per depth instead. Each state is valued by
``game24.tot``'s own Value predictor, as the search calls it (verdict probabilities from logprobs).
Prints, overall and per depth: the verdict's accuracy (``sure`` = reachable) against the
majority-class rate, recall on each class, and the AUC of the value score (the chance that a
reachable state outranks a dead one: 0.5 is a random ranking, what ToT's selection needs is > 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random

import reasonflow
from reasonflow.checking.game24 import legal_moves, reachable, start_state
from reasonflow.data import load


def auc(positive: list[float], negative: list[float]) -> float | None:
    """P(a positive scores above a negative), ties counting one half (the Mann-Whitney statistic)."""
    if not positive or not negative:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def sample_states(puzzles: list[str], count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    states = []
    while len(states) < count:
        question = puzzles[len(states) % len(puzzles)]
        steps, state = [], start_state(question)
        for _ in range(1 + len(states) % 2):  # depths 1 and 2 alternate
            move, state = rng.choice(legal_moves(state))
            steps.append(move)
        states.append({"question": question, "steps": steps, "depth": len(steps), "reachable": reachable(state)})
    return states


def balanced_states(puzzles: list[str], per_class: int, seed: int) -> list[dict]:
    """``per_class`` distinct reachable and dead states per depth, each on a random path of its puzzle."""
    rng = random.Random(seed)
    pools: dict = {}
    for question in puzzles:
        frontier = [([], start_state(question))]
        for depth in (1, 2):
            frontier = [(steps + [move], after) for steps, state in frontier for move, after in legal_moves(state)]
            for steps, state in frontier:
                pools.setdefault((depth, reachable(state)), {}).setdefault((question, state), steps)
    states = []
    for (depth, label), pool in sorted(pools.items()):
        if len(pool) < per_class:
            raise SystemExit(f"only {len(pool)} distinct {'reachable' if label else 'dead'} states at depth {depth}")
        for (question, _), steps in rng.sample(sorted(pool.items()), per_class):
            states.append({"question": question, "steps": steps, "depth": depth, "reachable": label})
    return states


def summary(rows: list[dict]) -> dict:
    pos = [r for r in rows if r["reachable"]]
    neg = [r for r in rows if not r["reachable"]]
    right = sum((r["verdict"] == "sure") == r["reachable"] for r in rows)
    return {"states": len(rows), "reachable": len(pos), "accuracy": right / len(rows),
            "majority_class_rate": max(len(pos), len(neg)) / len(rows),
            "recall_reachable": sum(r["verdict"] == "sure" for r in pos) / len(pos) if pos else None,
            "recall_dead": sum(r["verdict"] != "sure" for r in neg) / len(neg) if neg else None,
            "auc": auc([r["score"] for r in pos], [r["score"] for r in neg])}


async def value_all(states: list[dict], concurrency: int) -> None:
    program = reasonflow.program("game24.tot")
    gate = asyncio.Semaphore(concurrency)

    async def one(state):
        async with gate:
            state["score"], call = await program.lm_value(state["question"], state["steps"])
            state["verdict"] = str(call.completions[0].verdict) if call.completions else None

    await asyncio.gather(*(one(s) for s in states))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--base-url")
    parser.add_argument("--model", help="served model or adapter (default: the first one served)")
    parser.add_argument("--states", type=int, default=400)
    parser.add_argument("--per-class", type=int, default=0,
                        help="> 0: this many distinct reachable and dead states per depth instead of --states")
    parser.add_argument("--offset", type=int, default=900, help="first puzzle row (900: the benchmark rows 901-1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    puzzles = [ex.question for ex in load("game24", data_dir=args.data_dir, offset=args.offset, limit=100)]
    states = (balanced_states(puzzles, args.per_class, args.seed) if args.per_class > 0
              else sample_states(puzzles, args.states, args.seed))
    lm = reasonflow.configure(args.base_url, args.model, temperature=0.0)
    asyncio.run(value_all(states, args.concurrency))
    report = {"model": lm.served_model, "rows": [args.offset + 1, args.offset + 100],
              "prompt_format": getattr(lm, "prompt_format", "json"), "seed": args.seed,
              "sampling": f"balanced, {args.per_class} per class per depth" if args.per_class > 0 else "random moves",
              "all": summary(states), **{f"depth {d}": summary([s for s in states if s["depth"] == d]) for d in (1, 2)}}
    for name in ("all", "depth 1", "depth 2"):
        r = report[name]
        print(f"{name:8} {r['states']:4} states: verdict right {r['accuracy']:.1%} (majority class {r['majority_class_rate']:.1%}), "
              f"recall reachable {r['recall_reachable'] or 0:.1%} / dead {r['recall_dead'] or 0:.1%}, "
              f"AUC of the value {r['auc'] if r['auc'] is None else round(r['auc'], 3)}")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
