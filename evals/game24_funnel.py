"""Where a Game of 24 tree search loses its puzzles: a funnel read from a bench run's traces.

    python evals/game24_funnel.py runs/g24/game24-tot            # every program in that bench directory
    python evals/game24_funnel.py runs/g24/game24-tot --program game24.tot

For each program, over its puzzles, and per depth (moves made): how many puzzles had at least one
proposed state from which 24 is still reachable (``checking.game24.reachable``, exact), how many kept
one through selection, and the share of distinct proposed states that were reachable (the proposer's
precision; duplicates of a state proposed twice count once). The last line is puzzles solved. Read
together: a drop between "proposed" and "kept" is the value's fault, a drop between the previous
depth's "kept" and this depth's "proposed" is the proposer's.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from reasonflow import builtins
from reasonflow.finetune.data import bench_rows
from reasonflow.checking.game24 import reachable
from reasonflow.trace import Trace

KEPT = ("selected", "terminal", "answer")


def puzzle_funnel(trace, question: str) -> Counter:
    numbers_left = builtins.module("game24").numbers_left
    graph, out = trace.graph, Counter()
    for depth in (1, 2):
        # distinct proposed states at this depth: duplicates and illegal moves carry a reason and no score
        nodes = [n for n, a in graph.nodes(data=True) if a.get("depth") == depth and not a.get("reason")]
        states = {n: numbers_left(question, trace.steps_to(n)) for n in nodes}
        good = [n for n, s in states.items() if s is not None and reachable(s)]
        out[f"d{depth} states"] += len(nodes)
        out[f"d{depth} reachable states"] += len(good)
        out[f"d{depth} proposed a reachable state"] += bool(good)
        out[f"d{depth} kept a reachable state"] += any(graph.nodes[n].get("status") in KEPT for n in good)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_dir", help="a bench output directory (questions.jsonl, traces/)")
    parser.add_argument("--program", help="only this program (default: all in the directory)")
    args = parser.parse_args()
    funnels: dict[str, Counter] = defaultdict(Counter)
    for row in bench_rows(args.bench_dir):
        if not row.get("trace") or (args.program and row["program"] != args.program):
            continue
        funnel = funnels[row["program"]]
        funnel["puzzles"] += 1
        funnel["solved"] += bool(row.get("correct"))
        funnel.update(puzzle_funnel(Trace.load(Path(args.bench_dir) / row["trace"]), row["question"]))
    if not funnels:
        raise SystemExit(f"no traced rows in {args.bench_dir}")
    for program, f in sorted(funnels.items()):
        print(f"{program}: {f['puzzles']} puzzles")
        for depth in (1, 2):
            precision = f[f"d{depth} reachable states"] / max(1, f[f"d{depth} states"])
            print(f"  after {depth} move{'s' if depth > 1 else ''}: a reachable state proposed in "
                  f"{f[f'd{depth} proposed a reachable state']}, kept in {f[f'd{depth} kept a reachable state']}; "
                  f"{precision:.0%} of {f[f'd{depth} states']} distinct proposed states reachable")
        print(f"  solved {f['solved']}")


if __name__ == "__main__":
    main()
