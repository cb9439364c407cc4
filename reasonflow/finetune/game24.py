"""Game of 24 fine-tuning data: exactly labelled propose and value examples, and round-2 harvests.

``exact_examples(count)`` reads puzzles from the TRAIN rows only (rows 1-900 of the ToT CSV; the
benchmark's rows 901-1000 are refused) and makes, per puzzle, with a seeded RNG:

- **propose** examples: a state on a path to 24 (4, 3 or 2 numbers left) and one move that keeps 24
  reachable, along ``PROPOSE_PATHS`` random solution paths (the move drawn uniformly from the good
  moves, so over many examples the target is the distribution of good moves, not one of them);
- **value** examples: states after 1 and 2 moves, ``sure`` when 24 is still reachable and
  ``impossible`` when not (``checking.game24.reachable``: exhaustive, exact), ``VALUE_PER_CLASS`` of
  each class per depth, so the classes are balanced although most states are dead.

Inputs are what the search sends (``programs.game24.inputs``: the numbers left), rendered by the
signatures of ``game24.tot``'s own predictors (formats ``g24-propose`` / ``g24-value``).
``search_examples(bench_dir)`` keeps the moves along the model's own solved search paths from a bench
run's traces (expert iteration round 2).

Not guaranteed: identical (input, target) pairs within one call are kept once, so a puzzle may give
fewer examples than the maxima.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from reasonflow import builtins
from reasonflow.checking.game24 import fmt_number, good_moves, legal_moves, reachable, start_state
from reasonflow.data import GAME24_TRAIN_ROWS
from reasonflow.errors import ConfigError, DatasetError
from reasonflow.finetune.data import SFTExample, bench_rows

DATASET = "game24"
TRAIN_ROWS = GAME24_TRAIN_ROWS
PROPOSE_PATHS = 2  # random solution paths per puzzle, each giving a move at 4, 3 and 2 numbers left
VALUE_PER_CLASS = 2  # sure and impossible states per depth (1 and 2 moves made) per puzzle


def _numbers(state) -> str:
    return " ".join(fmt_number(v) for v in state)


def _propose(puzzle, state, move: str, source: str) -> SFTExample:
    return SFTExample(puzzle.id, source, "g24-propose", puzzle.question, {"next_step": move},
                      {"numbers": _numbers(state)})


def _value(puzzle, state, source: str = "gold:exact") -> SFTExample:
    return SFTExample(puzzle.id, source, "g24-value", puzzle.question,
                      {"verdict": "sure" if reachable(state) else "impossible"}, {"numbers": _numbers(state)})


def puzzle_examples(puzzle, rng: random.Random) -> list[SFTExample]:
    """The propose and value examples of one puzzle (see the module docstring)."""
    root = start_state(puzzle.question)
    out = []
    for _ in range(PROPOSE_PATHS if reachable(root) else 0):
        state = root
        while len(state) > 1:
            move = rng.choice(good_moves(state))
            out.append(_propose(puzzle, state, move, "gold:exact"))
            state = dict(legal_moves(state))[move]
    depth1 = sorted({after for _, after in legal_moves(root)})
    depth2 = sorted({after for s in depth1 for _, after in legal_moves(s)})
    for states in (depth1, depth2):
        for label in (True, False):
            pool = [s for s in states if reachable(s) == label]
            out += [_value(puzzle, s) for s in rng.sample(pool, min(VALUE_PER_CLASS, len(pool)))]
    return out


def exact_examples(count: int, *, offset: int = 0, seed: int = 0,
                   data_dir: str | None = None) -> tuple[list[SFTExample], dict]:
    """Examples from ``count`` train puzzles from row ``offset`` on; ``ConfigError`` past row 900."""
    from reasonflow import data as datasets_

    if offset < 0 or count < 1 or offset + count > TRAIN_ROWS:
        raise ConfigError(f"Game of 24 training puzzles are rows 1-{TRAIN_ROWS}: offset {offset} + count {count} "
                          f"would reach the benchmark rows {TRAIN_ROWS + 1}-1000")
    puzzles = datasets_.load(DATASET, split="train", data_dir=data_dir, offset=offset, limit=count)
    kept, seen, counts = [], set(), Counter()
    for puzzle in puzzles:
        for ex in puzzle_examples(puzzle, random.Random(f"{seed}|{puzzle.id}")):
            key = (ex.format, json.dumps(ex.inputs), json.dumps(ex.outputs))
            counts[f"{ex.format}:{'kept' if key not in seen else 'duplicate'}"] += 1
            if key not in seen:
                seen.add(key)
                kept.append(ex)
    counts.update(f"g24-value:{ex.outputs['verdict']}" for ex in kept if ex.format == "g24-value")
    return kept, {"puzzles": len(puzzles), "rows": [offset + 1, offset + len(puzzles)], **dict(sorted(counts.items()))}


def search_examples(bench_dir: str | Path) -> tuple[list[SFTExample], dict]:
    """The moves on every solved search path of a bench run over train puzzles (``questions.jsonl``
    and ``traces/``): each (numbers left, move) from the root to the answer node, once per puzzle."""
    numbers_left = builtins.module("game24").numbers_left
    from reasonflow.trace import Trace

    kept, counts = [], Counter()
    for row in bench_rows(bench_dir):
        counts["puzzles"] += 1
        if int(row["id"].rsplit(":", 1)[-1]) >= TRAIN_ROWS:
            raise DatasetError(f"{row['id']} is a benchmark row (Game of 24 trains on rows 1-{TRAIN_ROWS} only)")
        if not row.get("correct") or not row.get("trace"):
            continue
        graph = Trace.load(Path(bench_dir) / row["trace"]).graph
        node = next((n for n, a in graph.nodes(data=True) if a.get("status") == "answer"), None)
        chain = []
        while node is not None and list(graph.predecessors(node)):
            chain.append(str(graph.nodes[node].get("text") or "").strip())
            node = next(iter(graph.predecessors(node)))
        chain.reverse()
        puzzle = type("Puzzle", (), {"id": row["id"], "question": row["question"]})
        for i, move in enumerate(chain):
            kept.append(_propose(puzzle, numbers_left(row["question"], chain[:i]), move, f"search:{row['program']}"))
        counts["solved"] += bool(chain)
    counts["kept"] = len(kept)
    return kept, dict(counts)
