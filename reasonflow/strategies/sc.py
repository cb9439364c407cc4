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

from dataclasses import dataclass

import dspy

from reasonflow.checking.answers import present, unusable_reason, usable
from reasonflow.errors import ConfigError, NoAnswerError, describe
from reasonflow.options import Options, Samples, Temperature
from reasonflow.registry import register_strategy
from reasonflow.search import SearchRun, SearchStrategy, Task, predict, tally
from reasonflow.strategies.cot import _text


@dataclass(frozen=True)
class SCOptions(Options):
    k: Samples = 8  # sampled chains, in one n=k request
    temperature: Temperature = 0.7

    def __post_init__(self):
        super().__post_init__()
        check_sampling(self.k, self.temperature)


@register_strategy
class SelfConsistency(SearchStrategy):
    name = "sc"
    Options = SCOptions
    size_option = "k"
    grid = ({"k": 1}, {"k": 4}, {"k": 8})

    def __init__(self, task: Task, **options):
        super().__init__(task, **options)
        self.solve = dspy.ChainOfThought(task.solve)

    def width(self) -> int:
        return self.k

    async def search(self, run: SearchRun) -> None:
        root = run.trace.add_node(text=run.question, status="expanded")
        call = await predict(self.solve, n=self.k, temperature=self.temperature, question=run.question)
        run.trace.update(root, **call.node_attrs())  # one request made every sample: its usage sits on the root
        if call.error:
            run.trace.update(root, status="pruned", text=f"{run.question}\n\n{describe(call.error)}")
            run.error, run.votes, run.samples = call.error, [], [None] * self.k  # k samples, none usable
            return
        answers = [c.answer if usable(c.answer) else None for c in call.completions]
        nodes = [run.trace.add_node(text=c.reasoning, parent=root, action=f"sample {i}", answer=_text(c.answer),
                                    **({"status": "terminal"} if a is not None else
                                       {"status": "pruned", "reason": unusable_reason(c.answer)}))
                 for i, (c, a) in enumerate(zip(call.completions, answers))]
        offer_vote(run, self.task, answers, nodes, [c.reasoning for c in call.completions],
                   lambda: no_answer_error([c.answer for c in call.completions], "sample"))


def offer_vote(run: SearchRun, task: Task, answers: list, nodes: list[str], texts: list[str], no_answer,
               chosen=None) -> None:
    """How SC and PoT end: vote over the usable ``answers`` (None: left out), record votes and samples,
    mark the winning cluster selected and offer its first member; with nothing to count, record
    ``no_answer()`` (a ``NoAnswerError``) instead. ``chosen``: another rule's ``VoteResult`` over the
    same answers (PoT's logprob-weighted vote) picks the winner; ``votes`` stay the majority's counts."""
    majority = tally(task, answers)
    result = chosen or majority
    run.votes, run.samples = list(majority.counts), list(answers)
    if result.answer is None:
        run.error = no_answer()
        return
    winners = winning(task, answers, result.answer)
    for i in winners:
        run.trace.update(nodes[i], status="selected", score=result.share)
    run.offer(result.answer, result.share, nodes[winners[0]], texts[winners[0]])


def check_sampling(k: int, temperature: float | None) -> None:
    """``ConfigError`` for k samples that could only be identical (k > 1 at temperature 0)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive int, got {k!r}")
    if k > 1 and temperature is not None and temperature <= 0:
        raise ConfigError(f"k={k} samples at temperature {temperature} would be one sample {k} times; "
                          "use k=1 or a temperature > 0")


def no_answer_error(answers: list, what: str) -> NoAnswerError:
    """The ``error`` of a vote that had nothing to count."""
    bad = [a for a in answers if present(a)]
    if bad:
        return NoAnswerError(f"no usable answer: {len(bad)} of {len(answers)} {what}(s) gave a non-finite number "
                             f"(e.g. {str(bad[0])[:40]!r})")
    return NoAnswerError(f"no usable answer among {len(answers)} {what}(s)")


def winning(task, answers: list, winner) -> list[int]:
    """Indices of the answers in the winning cluster (never empty when ``winner`` came from them)."""
    found = [i for i, a in enumerate(answers) if present(a) and task.equivalent(a, winner)]
    if not found:  # an equivalence that is not reflexive for this value: fall back to equal text
        found = [i for i, a in enumerate(answers) if present(a) and str(a).strip() == str(winner).strip()]
    return found or [next(i for i, a in enumerate(answers) if present(a))]
