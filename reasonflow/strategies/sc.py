"""SelfConsistency(k): k chain-of-thought samples in ONE ``n=k`` request, then a majority vote.

    propose: k reasoning paths at temperature T (one request, vLLM batches them)
    vote:    cluster the answers by the task's equivalence; the largest cluster wins
             (tie-break: the cluster whose first member came first, see checking.majority_vote)

Returns ``votes`` (list of [answer, count] in first-appearance order) and ``samples`` (all k answers,
None for unusable ones) besides ``answer``. An answer is unusable when it is missing, blank or a
non-finite number (``nan``, ``inf``, ``1e309``); such samples are pruned in the trace and left out of
the vote, and with none usable the answer is None and ``error`` says why. ``k > 1`` at temperature 0
is refused with ``ConfigError`` (its samples would be one sample k times). Not guaranteed: with fewer
than k usable samples (a truncated or unparseable choice is dropped) the vote runs over what is left.
"""

from __future__ import annotations

import math
from decimal import Decimal

import dspy

from reasonflow.config import Budget
from reasonflow.errors import ConfigError
from reasonflow.search import SearchRun, SearchStrategy, Task, predict, tally
from reasonflow.strategies.cot import _text


class SelfConsistency(SearchStrategy):
    name = "sc"

    def __init__(self, task: Task, k: int = 8, *, temperature: float = 0.7, budget: Budget = Budget(),
                 program: str | None = None):
        super().__init__(task, budget=budget, program=program)
        check_sampling(k, temperature)
        self.k, self.temperature = k, temperature
        self.solve = dspy.ChainOfThought(task.solve)

    def width(self) -> int:
        return self.k

    def settings(self) -> dict:
        return {**super().settings(), "k": self.k, "temperature": self.temperature}

    async def search(self, run: SearchRun) -> None:
        check_sampling(self.k, self.temperature)  # a compiled copy may have had k or temperature set
        root = run.trace.add_node(text=run.question, status="expanded")
        call = await predict(self.solve, n=self.k, temperature=self.temperature, question=run.question)
        run.trace.update(root, **call.node_attrs())  # one request made every sample: its usage sits on the root
        if call.error:
            run.trace.update(root, status="pruned", text=f"{run.question}\n\n{call.error}")
            run.extra.update(error=call.error, votes=[], samples=[])
            return
        answers = [c.answer if usable(c.answer) else None for c in call.completions]
        nodes = [run.trace.add_node(text=c.reasoning, parent=root, action=f"sample {i}", answer=_text(c.answer),
                                    **({"status": "terminal"} if a is not None else
                                       {"status": "pruned", "reason": unusable_reason(c.answer)}))
                 for i, (c, a) in enumerate(zip(call.completions, answers))]
        result = tally(self.task, answers)
        run.extra.update(votes=[[a, n] for a, n in result.counts], samples=answers)
        if result.answer is None:
            run.extra["error"] = no_answer_error([c.answer for c in call.completions], "sample")
            return
        winners = winning(self.task, answers, result.answer)
        for i in winners:
            run.trace.update(nodes[i], status="selected", score=result.share)
        first = winners[0]
        run.offer(result.answer, result.share, nodes[first], call.completions[first].reasoning)


def check_sampling(k: int, temperature: float | None) -> None:
    """``ConfigError`` for k samples that could only be identical (k > 1 at temperature 0)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive int, got {k!r}")
    if k > 1 and temperature is not None and temperature <= 0:
        raise ConfigError(f"k={k} samples at temperature {temperature} would be one sample {k} times; "
                          "use k=1 or a temperature > 0")


def usable(answer) -> bool:
    """An answer that can be voted on and returned: present, not blank, and not a non-finite number."""
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        return False
    if isinstance(answer, bool):
        return True
    if isinstance(answer, (int, float, Decimal)):
        try:
            return math.isfinite(answer)
        except (OverflowError, ValueError):
            return False
    if isinstance(answer, str):
        try:
            return math.isfinite(float(answer.strip().replace(",", "")))
        except ValueError:  # not a number at all: usable as text
            return True
    return True


def unusable_reason(answer) -> str:
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        return "no answer"
    return f"the answer {str(answer)[:40]!r} is not a finite number"


def no_answer_error(answers: list, what: str) -> str:
    """The ``error`` of a vote that had nothing to count."""
    bad = [a for a in answers if a is not None and not (isinstance(a, str) and not a.strip())]
    if bad:
        return (f"no usable answer: {len(bad)} of {len(answers)} {what}(s) gave a non-finite number "
                f"(e.g. {str(bad[0])[:40]!r})")
    return f"no usable answer among {len(answers)} {what}(s)"


def winning(task, answers: list, winner) -> list[int]:
    """Indices of the answers in the winning cluster (never empty when ``winner`` came from them)."""
    found = [i for i, a in enumerate(answers) if _valid(a) and task.equivalent(a, winner)]
    if not found:  # an equivalence that is not reflexive for this value: fall back to equal text
        found = [i for i, a in enumerate(answers) if _valid(a) and str(a).strip() == str(winner).strip()]
    return found or [next(i for i, a in enumerate(answers) if _valid(a))]


def _valid(answer) -> bool:
    return answer is not None and str(answer).strip() != ""
