"""The server's named bounds (``DEFAULT_SERVE_*``) and ``ServeLimits``, the frozen config that carries them.

Every bound of ``reasonflow serve`` lives here with a safe default: request body size and read time,
concurrent requests, the per-request deadline, retained traces, question length, max_tokens, sampling
sizes, search budget, stream queue, readiness probe and shutdown grace.
``create_app(..., limits=ServeLimits(...))`` overrides them; ``GET /v1/models`` shows the deadline.

Not guaranteed: the limits bound what one request may ask for and how many run at once, not the total
CPU or engine time a client can use by sending requests one after another (there is no rate limit).
"""

from __future__ import annotations

from dataclasses import dataclass

from reasonflow.config import (
    DEFAULT_DEADLINE_S, DEFAULT_MAX_BREADTH, DEFAULT_MAX_MODEL_LEN, DEFAULT_MAX_N, DEFAULT_MAX_SEARCH_DEPTH,
)
from reasonflow.errors import ConfigError

DEFAULT_SERVE_HOST = "127.0.0.1"
DEFAULT_SERVE_PORT = 8100  # off vLLM's 8000, so an engine and a server share a host without a clash
DEFAULT_SERVE_MAX_BODY_BYTES = 1_000_000  # 1 MB; larger bodies get 413 before they are parsed
DEFAULT_SERVE_MAX_CONCURRENCY = 64  # solving requests in flight; one more gets a fast 503
DEFAULT_SERVE_TRACE_RETENTION = 256  # traces kept for GET /v1/traces/{id}; the oldest is dropped
DEFAULT_SERVE_MAX_QUESTION_CHARS = 20_000
DEFAULT_SERVE_MAX_MESSAGES = 256  # chat messages per request
DEFAULT_SERVE_MAX_TOKENS = DEFAULT_MAX_MODEL_LEN  # per LM request; the engine's context bounds it anyway
DEFAULT_SERVE_MAX_SAMPLES = DEFAULT_MAX_N  # k / n / proposals / value_samples per request
DEFAULT_SERVE_MAX_CHOICES = 8  # chat `n`: independent solves per chat request
DEFAULT_SERVE_MAX_BREADTH = DEFAULT_MAX_BREADTH  # ToT breadth, MCTS iterations (the strategies' Limit)
DEFAULT_SERVE_MAX_DEPTH = DEFAULT_MAX_SEARCH_DEPTH
DEFAULT_SERVE_MAX_NODES = 2_000  # budget.max_nodes a request may ask for
DEFAULT_SERVE_MAX_LM_CALLS = 2_000  # budget.max_lm_calls a request may ask for
DEFAULT_SERVE_MAX_DEADLINE_S = DEFAULT_DEADLINE_S  # budget.deadline_s a request may ask for
DEFAULT_SERVE_STREAM_QUEUE = 10_000  # search events buffered per stream; past it, updates are dropped
DEFAULT_SERVE_KEEPALIVE_S = 15.0  # SSE comment sent while a search runs without events
DEFAULT_SERVE_READY_TIMEOUT_S = 10.0  # /readyz: the 1-token completion must answer within this
DEFAULT_SERVE_SHUTDOWN_GRACE_S = 120.0  # SIGTERM: in-flight requests get this long to finish
DEFAULT_REQUEST_DEADLINE_S = 120.0  # every request, unless it asks for another (options.deadline_s): then 504
DEFAULT_SERVE_MAX_REQUEST_DEADLINE_S = 600.0  # the longest deadline a request may ask for
DEFAULT_SERVE_BODY_TIMEOUT_S = 10.0  # the whole request body must arrive within this, else 408


@dataclass(frozen=True)
class ServeLimits:
    """Bounds of one server. All sizes are inclusive maxima."""

    max_body_bytes: int = DEFAULT_SERVE_MAX_BODY_BYTES
    max_concurrency: int = DEFAULT_SERVE_MAX_CONCURRENCY
    trace_retention: int = DEFAULT_SERVE_TRACE_RETENTION
    max_question_chars: int = DEFAULT_SERVE_MAX_QUESTION_CHARS
    max_tokens: int = DEFAULT_SERVE_MAX_TOKENS
    max_choices: int = DEFAULT_SERVE_MAX_CHOICES
    stream_queue: int = DEFAULT_SERVE_STREAM_QUEUE
    keepalive_s: float = DEFAULT_SERVE_KEEPALIVE_S
    ready_timeout_s: float = DEFAULT_SERVE_READY_TIMEOUT_S
    shutdown_grace_s: float = DEFAULT_SERVE_SHUTDOWN_GRACE_S
    request_deadline_s: float = DEFAULT_REQUEST_DEADLINE_S
    max_request_deadline_s: float = DEFAULT_SERVE_MAX_REQUEST_DEADLINE_S
    body_timeout_s: float = DEFAULT_SERVE_BODY_TIMEOUT_S

    def __post_init__(self):
        for name in ("max_body_bytes", "max_concurrency", "trace_retention", "max_question_chars",
                     "max_tokens", "max_choices", "stream_queue", "keepalive_s", "ready_timeout_s",
                     "shutdown_grace_s", "request_deadline_s", "max_request_deadline_s", "body_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"ServeLimits.{name} must be > 0, got {value!r}")
        if self.request_deadline_s > self.max_request_deadline_s:
            raise ConfigError(f"ServeLimits.request_deadline_s={self.request_deadline_s} is over "
                              f"max_request_deadline_s={self.max_request_deadline_s}")
        if self.max_request_deadline_s > DEFAULT_SERVE_MAX_REQUEST_DEADLINE_S:
            raise ConfigError(f"ServeLimits.max_request_deadline_s must be at most "
                              f"{DEFAULT_SERVE_MAX_REQUEST_DEADLINE_S}, got {self.max_request_deadline_s}")

    def public(self) -> dict:
        """The bounds a client may want to know (shown by ``GET /v1/models``)."""
        return {"request_deadline_s": self.request_deadline_s, "max_request_deadline_s": self.max_request_deadline_s,
                "body_timeout_s": self.body_timeout_s, "max_body_bytes": self.max_body_bytes,
                "max_concurrency": self.max_concurrency, "max_tokens": self.max_tokens,
                "max_choices": self.max_choices}
