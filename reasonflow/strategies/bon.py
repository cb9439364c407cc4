"""BestOfN(n, verifier): n chain-of-thought samples in one request, each scored by a verifier.

    propose:  n samples (one ``n=n`` request)
    evaluate: verifier(question, reasoning, answer) -> score; either a Python callable, or
              ``"judge"``: the task's Judge predictor, one request per sample, all concurrent
    select:   the highest score (tie-break: the earlier sample)

Not guaranteed: an LM judge's score is the probability the model states, not a calibrated one; a
judge call that fails to parse scores 0.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable, Literal, Union

import dspy

from reasonflow.options import Options, Samples, Temperature
from reasonflow.registry import register_strategy
from reasonflow.search import SearchRun, SearchStrategy, Task, predict
from reasonflow.strategies.cot import _text

Verifier = Union[Literal["judge"], Callable[[str, str, object], float]]


@dataclass(frozen=True)
class BoNOptions(Options):
    n: Samples = 4
    verifier: Verifier = "judge"  # the task's Judge predictor, or a Python callable
    temperature: Temperature = 0.7


@register_strategy
class BestOfN(SearchStrategy):
    name = "bon"
    Options = BoNOptions
    size_option = "n"
    grid = ({"n": 2}, {"n": 4})

    def __init__(self, task: Task, **options):
        super().__init__(task, **options)
        self.solve = dspy.ChainOfThought(task.solve)
        self.judge = dspy.Predict(task.judge)

    def width(self) -> int:
        return self.n

    def settings(self) -> dict:
        name = self.verifier if isinstance(self.verifier, str) else getattr(self.verifier, "__name__", "callable")
        return {**super().settings(), "verifier": name}

    async def search(self, run: SearchRun) -> None:
        root = run.trace.add_node(text=run.question, status="expanded")
        call = await predict(self.solve, n=self.n, temperature=self.temperature, question=run.question)
        run.trace.update(root, **call.node_attrs())
        if call.error:
            run.error = call.error
            return
        samples = call.completions
        nodes = [run.trace.add_node(text=c.reasoning, parent=root, status="proposed", action=f"sample {i}",
                                    answer=_text(c.answer)) for i, c in enumerate(samples)]
        if run.out_of_budget(new_calls=len(samples) if self.verifier == "judge" else 0):
            scores = [0.0] * len(samples)
        else:
            scores = await self._scores(run.question, samples, nodes, run)
        for node, c, score in zip(nodes, samples, scores):
            run.trace.update(node, status="terminal", score=score)
            run.offer(c.answer, score, node, c.reasoning)
        run.scores = scores

    async def _scores(self, question: str, samples: list, nodes: list[str], run: SearchRun) -> list[float]:
        if callable(self.verifier):
            return [float(self.verifier(question, c.reasoning, c.answer)) for c in samples]
        calls = await asyncio.gather(*(predict(self.judge, question=question, reasoning=c.reasoning,
                                               answer=str(c.answer)) for c in samples))
        scores = []
        for node, call in zip(nodes, calls):
            run.trace.update(node, **call.node_attrs())
            p = call.completions[0].correct_probability if call.completions else 0.0
            scores.append(min(max(float(p), 0.0), 1.0))
        return scores
