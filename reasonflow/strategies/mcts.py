"""MCTS: Monte Carlo tree search over reasoning steps (UCT selection, expansion, value, backup).

    repeat `iterations` times (or until the budget runs out):
        select:  from the root, follow the child with the highest UCT score to a leaf
        expand:  propose `proposals` children of the leaf (one n=proposals request)
        value:   score every new child (concurrently): the task's value function or the LM
        backup:  add each child's value to the visit counts and value sums on its path
    answer:  follow the most visited child from the root (tie: higher mean value, then earlier);
             answer the deepest state on that path

``uct`` and ``backup`` are pure functions. Unvisited children are selected first (UCT = inf).
Not guaranteed: iterations run one after another; only each expansion's children are scored together.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated

from annotated_types import Ge

from reasonflow.options import Count, Limit
from reasonflow.registry import register_strategy
from reasonflow.search import SearchRun
from reasonflow.search.steps import State, StepOptions, StepSearch


def uct(parent_visits: int, visits: int, value_sum: float, c: float) -> float:
    """Upper confidence bound for trees: mean value plus c * sqrt(ln N_parent / N). Unvisited: inf."""
    if visits == 0:
        return math.inf
    return value_sum / visits + c * math.sqrt(math.log(max(parent_visits, 1)) / visits)


def backup(visits: dict, value_sums: dict, path: list[str], value: float) -> None:
    """Add one visit and ``value`` to every node on ``path`` (root first)."""
    for node in path:
        visits[node] += 1
        value_sums[node] += value


@dataclass(frozen=True)
class MCTSOptions(StepOptions):
    iterations: Count = 8
    c: Annotated[float, Ge(0.0), Limit(100.0)] = 1.0  # UCT exploration constant


@register_strategy
class MCTS(StepSearch):
    name = "mcts"
    Options = MCTSOptions
    size_option = "iterations"
    grid = ({"iterations": 4}, {"iterations": 8})

    async def search(self, run: SearchRun) -> None:
        root = State(run.trace.add_node(text=run.question, status="expanded"), ())
        children: dict[str, list[State]] = defaultdict(list)
        visits: dict[str, int] = defaultdict(int)
        sums: dict[str, float] = defaultdict(float)
        for _ in range(self.iterations):
            path = self.select(root, children, visits, sums)
            leaf = path[-1]
            if leaf.terminal or leaf.depth >= self.max_depth:
                backup(visits, sums, [s.node for s in path], leaf.value)
                continue
            if run.out_of_budget(new_nodes=self.proposals, new_calls=1, depth=leaf.depth + 1):
                break
            new = await self.expand(run, [leaf], evaluate=True)
            children[leaf.node] = new
            for child in new:
                backup(visits, sums, [s.node for s in path] + [child.node], child.value)
            if not new:  # a dead end: make it unattractive
                backup(visits, sums, [s.node for s in path], 0.0)
        for node, n in visits.items():
            run.trace.update(node, visits=n, mean_value=round(sums[node] / n, 4))
        best = self.principal_path(root, children, visits, sums)
        for state in best[1:]:
            run.trace.update(state.node, status="selected")
        await self.conclude(run, best[-1])

    def select(self, root: State, children, visits, sums) -> list[State]:
        path = [root]
        while children.get(path[-1].node):
            parent = path[-1]
            path.append(max(children[parent.node],
                            key=lambda s: uct(visits[parent.node], visits[s.node], sums[s.node], self.c)))
        return path

    @staticmethod
    def principal_path(root: State, children, visits, sums) -> list[State]:
        path = [root]
        while children.get(path[-1].node):
            kids = children[path[-1].node]
            path.append(max(kids, key=lambda s: (visits[s.node], sums[s.node] / max(visits[s.node], 1))))
        return path
