"""TreeOfThought: breadth-first (or beam) search over reasoning steps, as in the ToT paper (Yao et al.).

    frontier = [question]
    for depth in 1..D:
        children = propose(frontier)          # all frontier states at once, n=proposals each
        evaluate(children)                     # each state's as soon as its proposals arrive; identical states once
        frontier = select(children, breadth)   # greedy top-b, or sampled by value
    answer = best state in the frontier

``mode="bfs"`` ranks a state by its own value (the paper's BFS). ``mode="beam"`` ranks it by the mean
value along its path, so one lucky step cannot displace a consistently good line. Terminal states
are kept in the pool without expansion. Tie-break in greedy selection: the state created first.

Not guaranteed: ``selection="sample"`` is seeded (``seed``) but still depends on the model's outputs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from reasonflow.options import Count, Depth
from reasonflow.registry import register_strategy
from reasonflow.search import SearchRun
from reasonflow.search.steps import State, StepOptions, StepSearch


@dataclass(frozen=True)
class ToTOptions(StepOptions):
    breadth: Count = 5  # states kept per depth
    depth: Depth = 3
    selection: Literal["greedy", "sample"] = "greedy"
    mode: Literal["bfs", "beam"] = "bfs"


@register_strategy
class TreeOfThought(StepSearch):
    name = "tot"
    Options = ToTOptions
    size_option = "breadth"
    grid = ({"breadth": 2}, {"breadth": 3})

    def width(self) -> int:
        return self.breadth * self.proposals

    def rank(self, state: State) -> float:
        return state.path_score if self.mode == "beam" else state.value

    async def search(self, run: SearchRun) -> None:
        root = run.trace.add_node(text=run.question, status="expanded")
        frontier = [State(root, ())]
        rng = random.Random(self.seed)
        for depth in range(1, self.max_depth + 1):
            open_states = [s for s in frontier if not s.terminal]
            if not open_states:
                break
            if run.out_of_budget(new_nodes=len(open_states) * self.proposals, new_calls=len(open_states), depth=depth):
                break
            children = await self.expand(run, open_states, evaluate=True)
            pool = [s for s in frontier if s.terminal] + children
            frontier = self.select(pool, rng)
            for state in pool:
                run.trace.update(state.node, status=("terminal" if state.terminal else "selected")
                                 if state in frontier else "pruned")
        if frontier:
            best = max(frontier, key=self.rank)  # max() keeps the first of equals
            await self.conclude(run, best)

    def select(self, pool: list[State], rng: random.Random) -> list[State]:
        """The ``breadth`` states to keep: greedy top by rank, or sampled in proportion to it."""
        if len(pool) <= self.breadth:
            return list(pool)
        if self.selection == "greedy":
            order = sorted(range(len(pool)), key=lambda i: (-self.rank(pool[i]), i))
            return [pool[i] for i in sorted(order[: self.breadth])]
        chosen: list[int] = []
        candidates = list(range(len(pool)))
        while len(chosen) < self.breadth:
            weights = [max(self.rank(pool[i]), 1e-6) for i in candidates]
            pick = rng.choices(candidates, weights=weights)[0]
            candidates.remove(pick)
            chosen.append(pick)
        return [pool[i] for i in sorted(chosen)]
