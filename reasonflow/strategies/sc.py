"""SelfConsistency(k): k chain-of-thought samples in ONE ``n=k`` request, then a majority vote.

    propose: k reasoning paths at temperature T (one request, vLLM batches them)
    vote:    cluster the answers by the task's equivalence; the largest cluster wins
             (tie-break: the cluster whose first member came first, see checking.majority_vote)

Returns ``votes`` (list of [answer, count] in first-appearance order) and ``samples`` (all k answers,
None for unusable ones) besides ``answer``. Not guaranteed: with fewer than k usable samples (a
truncated or unparseable choice is dropped) the vote runs over what is left.
"""

from __future__ import annotations

import dspy

from reasonflow.config import Budget
from reasonflow.search import SearchRun, SearchStrategy, Task, predict, tally
from reasonflow.strategies.cot import _text


class SelfConsistency(SearchStrategy):
    name = "sc"

    def __init__(self, task: Task, k: int = 8, *, temperature: float = 0.7, budget: Budget = Budget(),
                 program: str | None = None):
        super().__init__(task, budget=budget, program=program)
        self.k, self.temperature = k, temperature
        self.solve = dspy.ChainOfThought(task.solve)

    def width(self) -> int:
        return self.k

    def settings(self) -> dict:
        return {**super().settings(), "k": self.k, "temperature": self.temperature}

    async def search(self, run: SearchRun) -> None:
        root = run.trace.add_node(text=run.question, status="expanded")
        call = await predict(self.solve, n=self.k, temperature=self.temperature, question=run.question)
        run.trace.update(root, **call.node_attrs())  # one request made every sample: its usage sits on the root
        if call.error:
            run.trace.update(root, status="pruned", text=f"{run.question}\n\n{call.error}")
            run.extra.update(error=call.error, votes=[], samples=[])
            return
        nodes = [run.trace.add_node(text=c.reasoning, parent=root, status="terminal", action=f"sample {i}",
                                    answer=_text(c.answer)) for i, c in enumerate(call.completions)]
        answers = [c.answer for c in call.completions]
        result = tally(self.task, answers)
        run.extra.update(votes=[[a, n] for a, n in result.counts], samples=answers)
        if result.answer is None:
            return
        winners = [i for i, a in enumerate(answers) if _valid(a) and self.task.equivalent(a, result.answer)]
        for i in winners:
            run.trace.update(nodes[i], status="selected", score=result.share)
        first = winners[0]
        run.offer(result.answer, result.share, nodes[first], call.completions[first].reasoning)


def _valid(answer) -> bool:
    return answer is not None and str(answer).strip() != ""
