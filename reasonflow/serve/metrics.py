"""Prometheus metrics of one server, at ``GET /metrics`` (text exposition, ``prometheus_client``).

Per served program (label ``program``; the set is fixed at startup, so cardinality is bounded):

    reasonflow_requests_total{program, outcome}        solves finished: outcome "answer", "no_answer",
                                                       "budget_exhausted" (an answer found as the budget ran
                                                       out) or the error code ("request_deadline", ...)
    reasonflow_request_duration_seconds{program}       histogram of solve wall time
    reasonflow_tokens_total{program, kind}             LM tokens: kind "prompt", "completion", "cached"
    reasonflow_lm_calls_total{program}                 LM requests made
    reasonflow_requests_in_flight{program}             solves running now

One solve is one ``/v1/solve`` request, one choice of a chat or completions request, or one stream. Each
app has its own registry, so several apps in one process (tests) do not share counts. With an API key,
``/metrics`` needs the Bearer token like every route but ``/healthz`` (Prometheus: ``authorization``
in the scrape config).

Not guaranteed: HTTP-level counts of requests refused before a solve starts (401, 413, 503 at the
gate, 4xx validation); a reverse proxy or uvicorn's access log has those.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Solves take from tens of milliseconds (scripted) to minutes (a tree search on CPU).
DURATION_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """The server's counters; ``observe(program)`` wraps one solve."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, programs: Iterable[str]):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("reasonflow_requests", "Solves finished, by program and outcome",
                                ["program", "outcome"], registry=self.registry)
        self.duration = Histogram("reasonflow_request_duration_seconds", "Wall time of one solve",
                                  ["program"], buckets=DURATION_BUCKETS_S, registry=self.registry)
        self.tokens = Counter("reasonflow_tokens", "LM tokens used by solves", ["program", "kind"],
                              registry=self.registry)
        self.lm_calls = Counter("reasonflow_lm_calls", "LM requests made by solves", ["program"],
                                registry=self.registry)
        self.in_flight = Gauge("reasonflow_requests_in_flight", "Solves running now", ["program"],
                               registry=self.registry)
        for program in programs:  # every served program shows up at 0 before its first request
            self.in_flight.labels(program)
            self.duration.labels(program)
            self.lm_calls.labels(program)
            for kind in ("prompt", "completion", "cached"):
                self.tokens.labels(program, kind)

    @contextmanager
    def observe(self, program: str) -> Iterator[dict]:
        """Count one solve of ``program``; the body sets ``outcome`` (and ``usage``) in the dict it gets."""
        seen: dict = {"outcome": "cancelled", "usage": None}
        self.in_flight.labels(program).inc()
        with self.duration.labels(program).time():
            try:
                yield seen
            finally:
                self.in_flight.labels(program).dec()
                self.requests.labels(program, seen["outcome"]).inc()
                usage = seen["usage"] or {}
                for kind in ("prompt", "completion", "cached"):
                    self.tokens.labels(program, kind).inc(max(int(usage.get(f"{kind}_tokens", 0) or 0), 0))
                self.lm_calls.labels(program).inc(max(int(usage.get("calls", 0) or 0), 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
