"""Benchmark statistics as pure functions: Wilson confidence intervals and the pass@k estimator.

How to run: ``wilson_interval(37, 50)`` gives the 95% interval of an accuracy of 37/50;
``pass_at_k(n=8, c=2, k=1)`` is the chance that one of k samples drawn from n (c of them correct)
is correct.

What it does not guarantee: the Wilson interval treats questions as independent Bernoulli trials, so it
covers sampling noise over questions, not a change of prompt, seed or dataset.
"""

from __future__ import annotations

import math

from reasonflow.errors import ConfigError

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of ``successes / trials``; (0.0, 1.0) when there are no trials.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0/n or n/n.
    """
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ConfigError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k) for c correct among n samples.

    With k == n it is 1.0 when any sample is correct, else 0.0 (SC's "any of the k samples").
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ConfigError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean(values: list[float]) -> float | None:
    """The arithmetic mean, or None for an empty list."""
    return sum(values) / len(values) if values else None
