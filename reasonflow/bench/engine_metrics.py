"""Engine-side figures for a bench run: vLLM's prefix-cache counters and the peak-throughput baseline.

``scrape(base_url)`` reads the server's Prometheus text at ``/metrics`` (the base URL without its
``/v1``) and returns {sample name: value summed over label sets}; ``hit_rate(before, after)`` is the
prefix-cache hit rate over the interval between two scrapes:
Δ``vllm:prefix_cache_hits_total`` / Δ``vllm:prefix_cache_queries_total`` (counted in tokens; the
names vLLM 0.32's V1 engine exposes, checked on the running server). ``measure_peak`` wraps
``engine.throughput.peak_throughput``, the denominator of utilisation. For an LM over replicas
(``base_url`` "u1,u2") ``scrape`` reads every replica's /metrics and sums them, keeping each
replica's own samples under ``name{replica="URL"}``; the peak is all replicas' at once.

Not guaranteed: the counters are engine-wide, so traffic from other clients during the interval is
counted too; a server without /metrics (or without these counters) gives None, never an error, and
so does a pool where any replica gives none (a sum over some replicas would be a wrong rate).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re

import httpx

from reasonflow.engine.throughput import Throughput, peak_throughput

log = logging.getLogger(__name__)

PREFIX_CACHE_HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")
PREFIX_CACHE_QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")
METRICS_TIMEOUT_S = 10.0
PEAK_MAX_TOKENS = 64  # per request of the peak measurement
PEAK_ROUNDS = 1  # rounds of `concurrency` requests (one keeps the main job short at large caps)
# name, optional {labels}, value (an optional timestamp may follow)
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})?[ \t]+(?P<value>\S+)", re.M)


def metrics_url(base_url: str) -> str:
    root = base_url.rstrip("/")
    return (root[: -len("/v1")] if root.endswith("/v1") else root) + "/metrics"


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {sample name: sum over its label sets}. Comments are skipped."""
    totals: dict[str, float] = {}
    for match in _SAMPLE.finditer(text):
        try:
            value = float(match["value"])
        except ValueError:
            continue
        if math.isfinite(value):
            totals[match["name"]] = totals.get(match["name"], 0.0) + value
    return totals


async def scrape(base_url: str, api_key: str | None = None) -> dict[str, float] | None:
    """The server's metrics now, or None when it has no readable /metrics. Replicas ("u1,u2"): the
    sum over them, with each one's samples kept as ``name{replica="URL"}``."""
    urls = [u.strip() for u in base_url.split(",") if u.strip()]
    if len(urls) > 1:
        each = await asyncio.gather(*(scrape(url, api_key) for url in urls))
        if any(m is None for m in each):
            return None
        totals: dict[str, float] = {}
        for url, metrics in zip(urls, each):
            for name, value in metrics.items():
                totals[name] = totals.get(name, 0.0) + value
                totals[f'{name}{{replica="{url}"}}'] = value
        return totals
    headers = {"Authorization": f"Bearer {api_key}"} if api_key and api_key != "EMPTY" else {}
    try:
        async with httpx.AsyncClient(timeout=METRICS_TIMEOUT_S) as client:
            response = await client.get(metrics_url(base_url), headers=headers)
            response.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("no engine metrics at %s: %s", metrics_url(base_url), exc)
        return None
    return parse_metrics(response.text)


def _first(metrics: dict[str, float], names: tuple[str, ...]) -> float | None:
    return next((metrics[n] for n in names if n in metrics), None)


def hit_rate(before: dict[str, float] | None, after: dict[str, float] | None) -> float | None:
    """Δhits / Δqueries between two scrapes; None when either is missing or nothing was queried."""
    if before is None or after is None:
        return None
    values = [_first(m, names) for m in (before, after) for names in (PREFIX_CACHE_HITS, PREFIX_CACHE_QUERIES)]
    if any(v is None for v in values):
        return None
    hits0, queries0, hits1, queries1 = values
    queries = queries1 - queries0
    return (hits1 - hits0) / queries if queries > 0 else None


async def measure_peak(base_url: str, concurrency: int, model: str | None, api_key: str | None = None
                       ) -> Throughput | None:
    """``peak_throughput`` at the bench's concurrency cap, or None (with a warning) if it fails."""
    try:
        return await peak_throughput(base_url, concurrency, model=model, max_tokens=PEAK_MAX_TOKENS,
                                     rounds=PEAK_ROUNDS, api_key=api_key or "EMPTY")
    except Exception as exc:  # an endpoint that refuses ignore_eos/min_tokens must not sink the bench
        log.warning("peak throughput measurement failed at %s: %s", base_url, exc)
        return None
