"""``StepSearch``: the propose / evaluate / answer machinery that ToT, DFS and MCTS share.

A state is the question plus the steps taken so far. ``expand`` asks the task's Propose predictor
for the next step of EVERY given state at once: one ``n=proposals`` request per state (the prompt is
shared, so vLLM batches the samples) and all states' requests concurrently. ``evaluate`` scores new
states, again all concurrently: the task's programmatic value if it has one, else the Value predictor
(sure / likely / impossible, averaged over ``value_samples`` samples of one request), the Vote
predictor (one request with ``value_samples`` votes over all candidates), or a Python callable.
Identical states (same steps, whitespace and case aside, or the task's ``state_key``) are evaluated
once: later copies are pruned as duplicates. Illegal moves (the task's ``validate_step``) are pruned
before any evaluation. With an action space (``Task.actions`` / ``step_pattern``) each propose request
carries its state's guided-decoding schema (``search.actions``), so a proposal outside it cannot be
written; ``policy="random"`` / ``"exact"`` replace the model by a baseline over the same space.
``value_scoring="logprob"`` ranks a state by the model's probability of each verdict (vLLM's top
logprobs) instead of the one verdict sampled, which breaks the ties a greedy verdict leaves.

Not guaranteed: a proposal that fails to parse or is truncated simply yields fewer children.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable, Literal, Union

import dspy

from reasonflow.options import Depth, Options, Samples, Seed, Temperature
from reasonflow.search.actions import baseline_proposals, baseline_value, check_policy, step_field, step_format
from reasonflow.search.base import SearchRun, SearchStrategy
from reasonflow.search.calls import NodeCall, predict
from reasonflow.search.task import VERDICT_VALUE, Task, expected_verdict_value, verdict_probabilities

VALUE_TOP_LOGPROBS = 5  # alternatives per position: enough for the three verdict classes

Evaluator = Union[Literal["value", "vote"], Callable[[str, list[str]], float]]


@dataclass
class State:
    node: str
    steps: tuple[str, ...]
    value: float = 0.0
    path_values: tuple[float, ...] = ()
    terminal: bool = False

    @property
    def depth(self) -> int:
        return len(self.steps)

    @property
    def path_score(self) -> float:
        """Mean value along the path (what beam search ranks by)."""
        return sum(self.path_values) / len(self.path_values) if self.path_values else 0.0


def steps_text(steps) -> str:
    return "\n".join(steps)


def render(task: Task, question: str, steps) -> str:
    return task.render(question, list(steps)) if task.render else steps_text(steps)


def state_key(steps) -> str:
    return " | ".join(" ".join(s.lower().split()) for s in steps)


@dataclass(frozen=True)
class StepOptions(Options):
    """What every tree search over steps takes (ToT, DFS and MCTS add their own)."""

    proposals: Samples = 3  # next steps proposed per state (one n=proposals request)
    evaluator: Evaluator = "value"  # the Value predictor, the Vote predictor, or a Python callable
    value_samples: Samples = 1
    temperature: Temperature = 0.7
    depth: Depth = 4  # steps at most (the budget's max_depth caps it too)
    policy: Literal["lm", "random", "exact"] = "lm"  # see reasonflow.search.actions
    value_scoring: Literal["verdict", "logprob"] = "verdict"
    seed: Seed = 0


class StepSearch(SearchStrategy):
    """Base for tree searches over steps. Subclasses implement ``search(run)``."""

    Options = StepOptions

    def __init__(self, task: Task, **options):
        super().__init__(task, **options)
        check_policy(task, self.policy)
        self.max_depth = min(self.depth, self.budget.max_depth)
        self.propose = dspy.Predict(task.propose)
        self.value = dspy.Predict(task.value)
        self.vote = dspy.Predict(task.vote)
        self.answer = dspy.Predict(task.answer) if task.answer is not None else None

    def settings(self) -> dict:
        evaluator = self.evaluator if isinstance(self.evaluator, str) else getattr(self.evaluator, "__name__", "callable")
        return {**super().settings(), "evaluator": evaluator, "max_depth": self.max_depth}

    def inputs(self, question: str, steps) -> dict:
        """The predictors' input fields for a state."""
        if self.task.inputs:
            return self.task.inputs(question, list(steps))
        return {"question": question, "steps": render(self.task, question, steps)}

    def key(self, question: str, steps) -> str:
        return self.task.state_key(question, list(steps)) if self.task.state_key else state_key(steps)

    def width(self) -> int:
        return self.proposals

    def is_terminal(self, question: str, steps) -> bool:
        return len(steps) >= self.max_depth or bool(self.task.is_terminal and self.task.is_terminal(question, list(steps)))

    # --- propose ------------------------------------------------------------------------------
    async def expand(self, run: SearchRun, states: list[State], *, evaluate: bool = False) -> list[State]:
        """Children of every state, proposed concurrently; duplicates and illegal moves pruned.

        With ``evaluate`` the children are also scored, pipelined: each state's children go to the value
        predictor as soon as that state's own proposals arrive, not after the slowest state's. Nodes,
        duplicates and tie-breaks are still decided in the states' order once all have arrived, so the
        search is the same as ``expand`` then ``evaluate``. Identical value inputs share one call."""
        scores: dict[str, asyncio.Future] = {}
        pipelined = evaluate and not (self.evaluator == "vote" and self.policy == "lm")  # a vote needs them all

        async def propose(state: State):
            proposed, prune = await self._propose(run, state), self._pruner(run, state)
            if pipelined:
                for step in proposed:
                    steps = state.steps + (step,)
                    key = self._score_key(run.question, steps)
                    if key not in scores and prune(step) is None:
                        scores[key] = asyncio.ensure_future(self._score(run.question, steps))
            return proposed, prune

        try:
            proposals = await asyncio.gather(*(propose(s) for s in states))
            children, seen = [], {}
            for state, (steps_proposed, prune) in zip(states, proposals):
                for i, step in enumerate(steps_proposed):
                    steps = state.steps + (step,)
                    node = run.trace.add_node(text=step, parent=state.node, status="proposed", action=f"propose {i}")
                    key = self.key(run.question, steps)
                    reason = f"duplicate of {seen[key]}" if key in seen else prune(step)
                    if reason:
                        run.trace.update(node, status="pruned", reason=reason)
                    else:
                        seen[key] = node
                        children.append(State(node, steps, path_values=state.path_values,
                                              terminal=self.is_terminal(run.question, steps)))
            if pipelined:
                scored = await asyncio.gather(*(scores[self._score_key(run.question, c.steps)] for c in children))
                self._set_values(run, children, scored)
            elif evaluate:
                await self.evaluate(run, children)
            return children
        finally:  # a failed round, or a duplicate whose inputs differed from the kept copy's
            for pending in scores.values():
                pending.cancel()

    def _pruner(self, run: SearchRun, state: State) -> Callable[[str], str | None]:
        """For one state (its action space computed once): why a proposed step cannot be a child
        (outside the action space, illegal), or None."""
        steps = list(state.steps)
        allowed = set(self.task.actions(run.question, steps)) if self.task.actions else None

        def reason(step: str) -> str | None:
            if allowed is not None and step not in allowed:
                return "outside the action space"
            if not step or (self.task.validate_step and not self.task.validate_step(run.question, steps, step)):
                return "illegal step"
            return None

        return reason

    async def _propose(self, run: SearchRun, state: State) -> list[str]:
        """The proposed next steps of one state: one guided ``n=proposals`` request, or the baseline."""
        steps = list(state.steps)
        if self.policy != "lm":
            return baseline_proposals(self.task, self.policy, run.question, steps, self.key(run.question, steps),
                                      self.proposals, self.seed)
        fmt = step_format(self.task, self.propose.signature, run.question, steps)
        call = await predict(self.propose, n=self.proposals, temperature=self.temperature,
                             lm_kwargs={"response_format": fmt} if fmt else None, **self.inputs(run.question, steps))
        run.trace.update(state.node, **call.node_attrs())
        field = step_field(self.propose.signature)
        return [str(getattr(pred, field)).strip() for pred in call.completions]

    # --- evaluate -----------------------------------------------------------------------------
    async def evaluate(self, run: SearchRun, states: list[State]) -> None:
        """Set ``value`` (and ``path_values``) on every state; scores go into the trace."""
        if self.evaluator == "vote" and self.policy == "lm":
            values = await self._vote(run, states)
            self._set_values(run, states, [(v, None) for v in values])
        else:
            self._set_values(run, states, await asyncio.gather(*(self._score(run.question, s.steps) for s in states)))

    def _set_values(self, run: SearchRun, states: list[State], scored) -> None:
        for state, (value, call) in zip(states, scored):
            if call is not None:
                run.trace.update(state.node, **call.node_attrs())
            state.value = value
            state.path_values = state.path_values + (value,)
            run.trace.update(state.node, score=round(value, 4))

    def _score_key(self, question: str, steps) -> str:
        """What a state's score depends on: the value predictor's inputs (exactly as rendered)."""
        return repr(sorted(self.inputs(question, steps).items()))

    async def _score(self, question: str, steps) -> tuple[float, NodeCall | None]:
        """A state's value, and the LM call behind it if there was one."""
        if self.task.value_fn is not None:
            value = self.task.value_fn(question, list(steps))
            if value is not None:
                return float(value), None
        if self.policy != "lm":
            return baseline_value(self.task, self.policy, question, list(steps), self.key(question, steps), self.seed), None
        if callable(self.evaluator):
            return float(self.evaluator(question, list(steps))), None
        return await self.lm_value(question, steps)

    async def lm_value(self, question: str, steps) -> tuple[float, NodeCall]:
        """The Value predictor's score of a state (mean over its samples) and the call behind it."""
        logprobs = {"logprobs": True, "top_logprobs": VALUE_TOP_LOGPROBS} if self.value_scoring == "logprob" else None
        call = await predict(self.value, n=self.value_samples, temperature=self.temperature if self.value_samples > 1 else None,
                             lm_kwargs=logprobs, **self.inputs(question, steps))
        values = []
        for c in call.completions:
            probabilities = verdict_probabilities(getattr(c, "logprobs", None)) if logprobs else None
            values.append(expected_verdict_value(probabilities) if probabilities
                          else VERDICT_VALUE.get(str(c.verdict), 0.0))
        return (sum(values) / len(values) if values else 0.0), call

    async def _vote(self, run: SearchRun, states: list[State]) -> list[float]:
        if not states:
            return []
        listing = "\n".join(f"{i + 1}. {render(self.task, run.question, s.steps)}" for i, s in enumerate(states))
        call = await predict(self.vote, n=self.value_samples, temperature=self.temperature if self.value_samples > 1 else None,
                             question=run.question, candidates=listing)
        tally = [0] * len(states)
        for c in call.completions:
            if isinstance(c.best, int) and 1 <= c.best <= len(states):
                tally[c.best - 1] += 1
        total = sum(tally) or 1
        return [t / total for t in tally]

    # --- answer -------------------------------------------------------------------------------
    async def conclude(self, run: SearchRun, state: State) -> None:
        """Read the answer off ``state`` (programmatically if the task can) and offer it."""
        answer = self.task.final_answer(run.question, list(state.steps)) if self.task.final_answer else None
        reasoning = steps_text(state.steps)
        if answer is None and self.answer is not None and self.policy == "lm" and run.remaining_s() > 0:
            call = await predict(self.answer, **self.inputs(run.question, state.steps))
            run.trace.update(state.node, **call.node_attrs())
            answer = call.completions[0].answer if call.completions else None
        run.offer(answer, state.value, state.node, reasoning)
