"""Game of 24 fine-tuning data: exactly labelled propose and value examples, and round-2 harvests.

``exact_examples(count)`` reads puzzles from the TRAIN rows only (rows 1-900 of the ToT CSV; the
benchmark's rows 901-1000 are refused) and makes, per puzzle, with a seeded RNG:

- **propose** examples: a state and one move that keeps 24 reachable. From each puzzle,
  ``PROPOSE_FIRST_MOVES`` first moves drawn uniformly from its good moves (over many examples the
  target is the distribution of good moves, not one of them); after one and two moves, every distinct
  reachable state the puzzles reach, once with each of its good moves. (Drawing whole random solution
  paths instead, and merging identical pairs, left 481 of the 1,045 reachable three-number states and
  77 of the 147 two-number ones, against 1,540 first moves, and the proposer after one move did barely
  better than chance);
- **value** examples: states after 1 and 2 moves, ``sure`` when 24 is still reachable and
  ``impossible`` when not (``checking.game24.reachable``: exhaustive, exact), after two moves with
  the trials the value writes first (``checking.game24.value_trials``: each move up to the one that
  makes 24, results exact). The classes are balanced
  per depth over all the puzzles, *after* merging identical states: ``VALUE_PER_CLASS[depth]``
  examples of each class per puzzle (more after two moves, where selection keeps 5 of ~40 states). Dead states are drawn weighted by how many puzzles reach them (a
  proxy for how often the search meets them); the few distinct reachable states are repeated evenly
  to fill their share (rows 1-900 reach only 147 distinct reachable two-number states among 23,864,
  so a per-puzzle balance merged to 147 against ~1,800 and the value learnt to say ``impossible``).

Inputs are what the search sends (``programs.game24.inputs``: the numbers left), rendered by the
signatures of ``game24.tot``'s own predictors (formats ``g24-propose`` / ``g24-value``).
``search_examples(bench_dir)`` keeps the moves along the model's own solved search paths from a bench
run's traces (expert iteration round 2).

Not guaranteed: identical propose (input, target) pairs within one call are kept once, so a puzzle may
give fewer propose examples than the maxima; value examples repeat reachable states on purpose.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from reasonflow import builtins
from reasonflow.checking.game24 import fmt_number, good_moves, legal_moves, reachable, start_state, value_trials
from reasonflow.data import GAME24_TRAIN_ROWS
from reasonflow.errors import ConfigError, DatasetError
from reasonflow.finetune.data import SFTExample, bench_rows

DATASET = "game24"
TRAIN_ROWS = GAME24_TRAIN_ROWS
PROPOSE_FIRST_MOVES = 2  # good first moves drawn per puzzle (identical ones merged)
VALUE_PER_CLASS = {1: 1, 2: 2}  # value examples of each class (sure, impossible) per puzzle, by moves made
PARTS = ("propose", "value")  # what exact_examples makes; the recipe's gold formats exact (both), propose, value


def _numbers(state) -> str:
    return " ".join(fmt_number(v) for v in state)


def _propose(puzzle, state, move: str, source: str) -> SFTExample:
    return SFTExample(puzzle.id, source, "g24-propose", puzzle.question, {"next_step": move},
                      {"numbers": _numbers(state)})


def _value(puzzle, state, source: str = "gold:exact") -> SFTExample:
    return SFTExample(puzzle.id, source, "g24-value", puzzle.question,
                      {"trials": value_trials(state), "verdict": "sure" if reachable(state) else "impossible"},
                      {"numbers": _numbers(state)})


def first_moves(puzzle, rng: random.Random) -> list[SFTExample]:
    """``PROPOSE_FIRST_MOVES`` good first moves of one puzzle, drawn uniformly (none when it is unsolvable)."""
    root = start_state(puzzle.question)
    moves = good_moves(root) if reachable(root) else []
    return [_propose(puzzle, root, rng.choice(moves), "gold:exact") for _ in range(PROPOSE_FIRST_MOVES if moves else 0)]


def deeper_moves(by_depth: dict[int, Counter]) -> list[SFTExample]:
    """Every distinct reachable state after one and two moves, once with each of its good moves."""
    return [_propose(puzzle, state, move, "gold:exact")
            for depth in sorted(by_depth) for state, puzzle in sorted(by_depth[depth], key=lambda k: k[0])
            if reachable(state) for move in good_moves(state)]


def value_states(puzzles) -> dict[int, Counter]:
    """Per depth (moves made): (state, the first puzzle reaching it) -> how many puzzles reach that state."""
    by_depth: dict[int, Counter] = {1: Counter(), 2: Counter()}
    first_seen: dict = {}
    for puzzle in puzzles:
        depth1 = {after for _, after in legal_moves(start_state(puzzle.question))}
        depth2 = {after for s in depth1 for _, after in legal_moves(s)}
        for depth, states in ((1, depth1), (2, depth2)):
            by_depth[depth].update(states)
            for s in states:
                first_seen.setdefault(s, puzzle)
    return {depth: Counter({(s, first_seen[s]): n for s, n in states.items()}) for depth, states in by_depth.items()}


def balanced_values(by_depth: dict[int, Counter], puzzles: int, rng: random.Random) -> tuple[list[SFTExample], dict]:
    """``VALUE_PER_CLASS[depth] * puzzles`` value examples per class per depth (see the module docstring)."""
    out, counts = [], Counter()
    for depth, states in by_depth.items():
        wanted = VALUE_PER_CLASS[depth] * puzzles
        for label in (True, False):
            pool = sorted((key for key in states if reachable(key[0]) == label), key=lambda k: k[0])
            counts[f"depth{depth}:{'sure' if label else 'impossible'}:distinct"] = len(pool)
            if not pool:
                continue
            if len(pool) >= wanted:  # weighted sampling without replacement (Efraimidis-Spirakis keys)
                chosen = sorted(pool, key=lambda k: rng.random() ** (1.0 / states[k]), reverse=True)[:wanted]
            else:  # every distinct state, repeated evenly up to the class's share
                chosen = pool * (wanted // len(pool)) + rng.sample(pool, wanted % len(pool))
            out += [_value(puzzle, state) for state, puzzle in chosen]
    rng.shuffle(out)
    return out, counts


def exact_examples(count: int, *, offset: int = 0, seed: int = 0, data_dir: str | None = None,
                   parts: tuple[str, ...] = PARTS) -> tuple[list[SFTExample], dict]:
    """Examples from ``count`` train puzzles from row ``offset`` on; ``ConfigError`` past row 900.
    ``parts`` keeps the propose and/or value examples (a value-only pass trains the value on)."""
    from reasonflow import data as datasets_

    if not parts or set(parts) - set(PARTS):
        raise ConfigError(f"parts must be a non-empty subset of {PARTS}, got {parts!r}")
    if offset < 0 or count < 1 or offset + count > TRAIN_ROWS:
        raise ConfigError(f"Game of 24 training puzzles are rows 1-{TRAIN_ROWS}: offset {offset} + count {count} "
                          f"would reach the benchmark rows {TRAIN_ROWS + 1}-1000")
    puzzles = datasets_.load(DATASET, split="train", data_dir=data_dir, offset=offset, limit=count)
    states = value_states(puzzles)
    proposals = [ex for puzzle in puzzles for ex in first_moves(puzzle, random.Random(f"{seed}|{puzzle.id}"))]
    kept, seen, counts = [], set(), Counter()
    for ex in (proposals + deeper_moves(states) if "propose" in parts else []):
        key = (json.dumps(ex.inputs), json.dumps(ex.outputs))
        counts[f"{ex.format}:{'kept' if key not in seen else 'duplicate'}"] += 1
        if key not in seen:
            seen.add(key)
            kept.append(ex)
    values, value_counts = balanced_values(states, len(puzzles), random.Random(f"{seed}|values")) \
        if "value" in parts else ([], {})
    counts.update(value_counts)
    counts.update(f"g24-value:{ex.outputs['verdict']}" for ex in values)
    return kept + values, {"puzzles": len(puzzles), "rows": [offset + 1, offset + len(puzzles)], **dict(sorted(counts.items()))}


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
        trace = Trace.load(Path(bench_dir) / row["trace"])
        node = next((n for n, a in trace.graph.nodes(data=True) if a.get("status") == "answer"), None)
        chain = trace.steps_to(node) if node is not None else []
        puzzle = type("Puzzle", (), {"id": row["id"], "question": row["question"]})
        for i, move in enumerate(chain):
            kept.append(_propose(puzzle, numbers_left(row["question"], chain[:i]), move, f"search:{row['program']}"))
        counts["solved"] += bool(chain)
    counts["kept"] = len(kept)
    return kept, dict(counts)
