"""ChainOfThought: DSPy's ``dspy.ChainOfThought`` over the task's solve signature, as a strategy.

One request; the trace is the question and one reasoning node. With reasonflow's StructuredAdapter
the reasoning and answer come back as bounded JSON. Not guaranteed: a truncated or unparseable
completion, or a non-finite number as the answer (``nan``, ``1e309``), gives ``answer=None`` and
``error`` (the run does not raise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import dspy

from reasonflow.checking.answers import unusable_reason, usable
from reasonflow.errors import NoAnswerError, describe
from reasonflow.options import Options, Temperature
from reasonflow.registry import register_strategy
from reasonflow.search import SearchRun, SearchStrategy, Task, predict


@dataclass(frozen=True)
class CoTOptions(Options):
    temperature: Optional[Temperature] = None  # None: the LM's own


@register_strategy
class ChainOfThought(SearchStrategy):
    name = "cot"
    Options = CoTOptions

    def __init__(self, task: Task, **options):
        super().__init__(task, **options)
        self.solve = dspy.ChainOfThought(task.solve)

    async def search(self, run: SearchRun) -> None:
        root = run.trace.add_node(text=run.question, status="expanded")
        call = await predict(self.solve, temperature=self.temperature, question=run.question)
        if call.error:
            run.trace.add_node(text=describe(call.error), parent=root, status="pruned", action="solve",
                               **call.node_attrs())
            run.error = call.error
            return
        pred = call.completions[0]
        if not usable(pred.answer):
            reason = unusable_reason(pred.answer)
            run.trace.add_node(text=pred.reasoning, parent=root, status="pruned", action="solve",
                               answer=_text(pred.answer), reason=reason, **call.node_attrs())
            run.error = NoAnswerError(f"no usable answer: {reason}")
            return
        node = run.trace.add_node(text=pred.reasoning, parent=root, status="terminal", action="solve",
                                  answer=_text(pred.answer), **call.node_attrs())
        run.offer(pred.answer, 1.0, node, pred.reasoning)


def _text(value):
    return None if value is None else str(value)
