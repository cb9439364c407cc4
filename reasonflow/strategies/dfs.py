"""DFS: depth-first search over reasoning steps with a pruning threshold and backtracking (ToT paper).

    visit(state):
        if state is terminal: answer it; stop if its value >= threshold
        children = propose(state); evaluate(children)      # children scored concurrently
        prune every child whose value < threshold
        for the other children, best first:
            if visit(child) found an answer: stop
            else: backtrack (child marked pruned)

The first terminal state whose value reaches ``threshold`` ends the search. If none does, the best
terminal state seen (or the best state reached) answers. Not guaranteed: DFS is sequential by nature;
only each node's children are proposed and scored concurrently.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasonflow.options import Share
from reasonflow.registry import register_strategy
from reasonflow.search import SearchRun
from reasonflow.search.steps import State, StepOptions, StepSearch


@dataclass(frozen=True)
class DFSOptions(StepOptions):
    threshold: Share = 0.5  # children valued below it are pruned; a terminal state at or above it answers


@register_strategy
class DFS(StepSearch):
    name = "dfs"
    Options = DFSOptions
    size_option = "proposals"
    grid = ({"threshold": 0.25}, {"threshold": 0.5})

    async def search(self, run: SearchRun) -> None:
        root = State(run.trace.add_node(text=run.question, status="expanded"), (), value=1.0)
        best: list[State] = [root]  # best state reached, for the fallback answer
        found = await self.visit(run, root, best)
        if found is None:
            await self.conclude(run, best[0])
        else:
            await self.conclude(run, found)

    async def visit(self, run: SearchRun, state: State, best: list[State]) -> State | None:
        if state.terminal:
            run.trace.update(state.node, status="terminal")
            if (state.value, state.depth) > (best[0].value, best[0].depth) or not best[0].terminal:
                best[0] = state
            return state if state.value >= self.threshold else None
        if run.out_of_budget(new_nodes=self.proposals, new_calls=1, depth=state.depth + 1):
            return None
        children = await self.expand(run, [state], evaluate=True)
        children.sort(key=lambda s: -s.value)  # stable: equal values keep proposal order
        for child in children:
            if child.value < self.threshold:
                run.trace.update(child.node, status="pruned", reason="below threshold")
        for child in (c for c in children if c.value >= self.threshold):
            if not best[0].terminal and (child.depth, child.value) > (best[0].depth, best[0].value):
                best[0] = child
            run.trace.update(child.node, status="selected")
            found = await self.visit(run, child, best)
            if found is not None:
                return found
            if run.exhausted:
                return None
            if not child.terminal:
                run.trace.update(child.node, status="pruned", reason="backtracked")
        return None
