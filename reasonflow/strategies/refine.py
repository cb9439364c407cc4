"""SelfRefine(rounds): draft an answer, then critique and revise it, as in Self-Refine (Madaan et al., 2023).

    draft = solve(question)                          # chain of thought, the task's solve signature
    repeat `rounds` times:
        feedback, correct = critique(question, draft)
        if correct: stop                             # the model is satisfied with its draft
        draft = refine(question, draft, feedback)    # same answer type as the task's solve
    answer = the last usable draft

The trace is a chain: question -> draft -> revision 1 -> ...; each node's text is the draft's reasoning
and its ``feedback`` attribute the critique that followed it. A revision that fails to parse, is cut off
or has no usable answer is pruned and the previous draft stands.

This file plus its import line in ``strategies/__init__.py`` is all a strategy takes: ``reasonflow``
exports it, its options are request options on the server, ``@N`` sets ``rounds`` and the compiler tries
its ``grid``. A named program over a task is then one ``@register("gsm8k.refine", kind=...)`` factory.

Not guaranteed: a small model's critique is often wrong; ``correct`` stops early only on its say-so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import dspy

from reasonflow.checking.answers import unusable_reason, usable
from reasonflow.errors import NoAnswerError
from reasonflow.options import Count, Options, Temperature
from reasonflow.registry import register_strategy
from reasonflow.search import SearchRun, SearchStrategy, Task, predict


class Critique(dspy.Signature):
    """Check the draft answer to the problem. Point out any mistake briefly, and say whether it is correct."""

    question: str = dspy.InputField()
    draft: str = dspy.InputField(desc="the draft's reasoning and answer")
    feedback: str = dspy.OutputField(desc="what is wrong and how to fix it, or 'none'", max_chars=300)
    correct: bool = dspy.OutputField()


def refine_signature(solve: type[dspy.Signature]) -> type[dspy.Signature]:
    """The task's solve signature with the draft and the feedback as inputs: same answer field, same type."""
    return (solve.append("draft", dspy.InputField(desc="the previous reasoning and answer"), str)
            .append("feedback", dspy.InputField(desc="what to fix"), str)
            .with_instructions(f"{solve.instructions}\nRevise the draft answer using the feedback."))


@dataclass(frozen=True)
class RefineOptions(Options):
    rounds: Count = 2  # critique-and-revise rounds at most
    temperature: Optional[Temperature] = None


@register_strategy
class SelfRefine(SearchStrategy):
    name = "refine"
    Options = RefineOptions
    size_option = "rounds"
    grid = ({"rounds": 1}, {"rounds": 2})

    def __init__(self, task: Task, **options):
        super().__init__(task, **options)
        self.solve = dspy.ChainOfThought(task.solve)
        self.critique = dspy.Predict(Critique)
        self.refine = dspy.ChainOfThought(refine_signature(task.solve))

    async def search(self, run: SearchRun) -> None:
        parent = run.trace.add_node(text=run.question, status="expanded")
        call = await predict(self.solve, temperature=self.temperature, question=run.question)
        draft, parent = self._keep(run, call, parent, "draft", None)
        for round_ in range(1, self.rounds + 1):
            if draft is None or run.out_of_budget(new_nodes=1, new_calls=2, depth=round_ + 1):
                break
            text = f"{draft.reasoning}\nAnswer: {draft.answer}"
            review = await predict(self.critique, question=run.question, draft=text)
            if not review.completions:
                break
            verdict = review.completions[0]
            run.trace.update(parent, feedback=str(verdict.feedback), **review.node_attrs())
            if verdict.correct:
                break
            call = await predict(self.refine, temperature=self.temperature, question=run.question, draft=text,
                                 feedback=str(verdict.feedback))
            revised, node = self._keep(run, call, parent, f"revision {round_}", draft)
            if revised is draft:  # the revision was unusable: the draft stands
                break
            draft, parent = revised, node
        if draft is not None:
            run.trace.update(parent, status="selected")
            run.offer(draft.answer, 1.0, parent, draft.reasoning)

    def _keep(self, run: SearchRun, call, parent: str, action: str, previous):
        """The call's completion as the new draft (and its node), or ``previous`` when it is unusable."""
        pred = call.completions[0] if call.completions else None
        if pred is None or not usable(pred.answer):
            reason = str(call.error) if call.error else unusable_reason(getattr(pred, "answer", None))
            run.trace.add_node(text=getattr(pred, "reasoning", "") or reason, parent=parent, status="pruned",
                               action=action, reason=reason, **call.node_attrs())
            if previous is None:
                run.error = call.error or NoAnswerError(f"no usable answer: {reason}")
            return previous, parent
        node = run.trace.add_node(text=pred.reasoning, parent=parent, status="terminal", action=action,
                                  answer=str(pred.answer), **call.node_attrs())
        return pred, node
