"""Majority voting over sampled answers, with a pluggable equivalence (self-consistency's vote).

What it does: ``majority_vote(["18", "18.0", "20"], numeric_equivalent)`` groups equivalent answers
into clusters and returns the largest, with every cluster's size. ``weighted_vote(answers, weights)``
is the same clustering with each answer counted by its weight (e.g. the model's own confidence in
the sample that gave it), so the heaviest cluster wins.

How to run: a pure function over a list; it neither mutates its input nor keeps state.

What it does not guarantee: equivalence need not be transitive (a tolerance, Math-Verify), so a
cluster is "every answer equivalent to its first member", not a true equivalence class; answers are
compared only against those first members. Each comparison costs what ``equivalent`` costs: with
``math_equal`` that is up to n x clusters worker calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from reasonflow.checking.answers import present


def exact_equivalent(a: Any, b: Any) -> bool:
    """The default equivalence: equal text after stripping surrounding whitespace."""
    return str(a).strip() == str(b).strip()


@dataclass(frozen=True)
class VoteResult:
    """The outcome of a vote.

    ``answer`` is the winning cluster's first member (None when no answer was valid); ``counts`` lists
    ``(first member, size)`` per cluster in order of first appearance; ``total`` counts valid answers.
    """

    answer: Any | None
    counts: list[tuple[str, int]]
    total: int

    @property
    def share(self) -> float:
        """The winner's fraction of the valid answers (0.0 when there were none)."""
        return max(size for _, size in self.counts) / self.total if self.total else 0.0


def majority_vote(answers: list, equivalent: Callable[[Any, Any], bool] = exact_equivalent) -> VoteResult:
    """The most common answer among ``answers`` under ``equivalent``.

    None and empty or blank strings are ignored; strings are stripped. Each answer joins the first
    cluster (in order of first appearance) whose first member it is equivalent to, called as
    ``equivalent(answer, first_member)``, or starts a new cluster.
    Tie-break: among equally large clusters, the one whose first member appears earliest wins.
    """
    return _vote(answers, [1] * len(answers), equivalent)


def weighted_vote(answers: list, weights: list, equivalent: Callable[[Any, Any], bool] = exact_equivalent) -> VoteResult:
    """The answer whose cluster (as in ``majority_vote``) has the largest total weight.

    ``weights[i]`` weighs ``answers[i]``; a weight that is None, negative or not finite counts as 1.0,
    so with no usable weights this is the majority vote. ``counts`` holds (first member, total weight)
    and ``total`` the weight of every valid answer. Tie-break: among clusters of equal weight, the one
    whose first member appears earliest wins.
    """
    if len(weights) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(weights)} weights")
    return _vote(answers, [1.0 if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < float("inf")
                           else float(w) for w in weights], equivalent)


def _vote(answers: list, weights: list, equivalent: Callable[[Any, Any], bool]) -> VoteResult:
    """Cluster the present answers by ``equivalent`` (first appearance order) and pick the heaviest."""
    members: list[Any] = []
    sizes: list = []
    for answer, weight in zip(answers, weights):
        if not present(answer):
            continue
        answer = answer.strip() if isinstance(answer, str) else answer
        for index, first in enumerate(members):
            if equivalent(answer, first):
                sizes[index] += weight
                break
        else:
            members.append(answer)
            sizes.append(weight)
    if not members:
        return VoteResult(answer=None, counts=[], total=0)
    best = max(range(len(sizes)), key=lambda i: (sizes[i], -i))  # equal weight: the earlier cluster
    return VoteResult(answer=members[best], counts=list(zip(members, sizes)), total=sum(sizes))
