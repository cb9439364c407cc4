"""Per-call LM usage records and their totals per program run.

Every request that ``reasonflow.lm`` sends produces one ``CallRecord``: prompt, completion and cached
tokens, latency, the finish reasons of its choices and how many were dropped as truncated or
unparseable. ``track_usage()`` opens a ``Usage`` collector for a block of code; records go to every
collector that is open in the current context, so a node, the search around it and the bench around
that each see their own totals. Collectors follow ``contextvars``, so asyncio tasks inherit them;
plain threads do not (wrap the thread's work in ``contextvars.copy_context().run``).
``Usage.computed_prompt_tokens`` is the prompt tokens the engine really computed (prefix-cache hits
excluded) and ``engine_tokens`` adds the generated ones: the work that engine utilisation counts.
Calls to an LM over several replicas (``reasonflow.replicas``) also name the replica that answered
and the ones whose attempts failed first; ``Usage.replicas`` keeps those figures per replica (and
``to_dict()`` shows them under ``"replicas"``), while the totals still count each call once.

Not guaranteed: cached-token counts are what the server reports (vLLM reports them when prefix
caching is on and ``--enable-prompt-tokens-details`` is set), otherwise zero.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from reasonflow.config import DEFAULT_HISTORY_LIMIT

_ids = itertools.count(1)
_active: contextvars.ContextVar[tuple["Usage", ...]] = contextvars.ContextVar("reasonflow_usage", default=())
_last: contextvars.ContextVar["CallRecord | None"] = contextvars.ContextVar("reasonflow_last_call", default=None)


def next_call_id() -> str:
    return f"call-{next(_ids)}"


@dataclass
class CallRecord:
    """One HTTP request to the model endpoint."""

    id: str
    model: str
    n: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency_s: float = 0.0
    finish_reasons: list[str] = field(default_factory=list)
    truncated: int = 0  # choices dropped because finish_reason == "length"
    parse_failures: int = 0  # choices dropped because their fields did not parse
    error: str | None = None  # exception class name when the call failed
    replica: str | None = None  # the replica that answered (an LM over several replicas only)
    failed_on: list[str] = field(default_factory=list)  # replicas whose attempts at this call failed first

    def to_dict(self) -> dict:
        return asdict(self)


class Usage:
    """Totals over the calls made while it was active. Keeps at most ``max_records`` records (the
    totals always count every call)."""

    def __init__(self, max_records: int = DEFAULT_HISTORY_LIMIT):
        self.max_records = max_records
        self.records: list[CallRecord] = []
        self._lock = threading.Lock()
        self.calls = self.prompt_tokens = self.completion_tokens = self.cached_tokens = 0
        self.sequences = 0  # choices asked for (a request with n=k counts k)
        self.truncated = self.parse_failures = self.errors = 0
        self.latency_s = 0.0
        self.finish_reasons: Counter[str] = Counter()
        self.replicas: dict[str, dict[str, int]] = {}  # url -> calls, sequences, tokens, failed attempts

    def add(self, rec: CallRecord) -> None:
        with self._lock:
            self.calls += 1
            self.sequences += rec.n
            self.prompt_tokens += rec.prompt_tokens
            self.completion_tokens += rec.completion_tokens
            self.cached_tokens += rec.cached_tokens
            self.latency_s += rec.latency_s
            self.truncated += rec.truncated
            self.errors += rec.error is not None
            self.finish_reasons.update(rec.finish_reasons)
            if rec.replica is not None:
                mine = self._replica(rec.replica)
                mine["calls"] += 1
                mine["sequences"] += rec.n
                mine["prompt_tokens"] += rec.prompt_tokens
                mine["completion_tokens"] += rec.completion_tokens
                mine["cached_tokens"] += rec.cached_tokens
            for url in rec.failed_on:
                self._replica(url)["failed_attempts"] += 1
            if len(self.records) < self.max_records:
                self.records.append(rec)

    def _replica(self, url: str) -> dict[str, int]:
        if url not in self.replicas:
            self.replicas[url] = dict.fromkeys(("calls", "sequences", "prompt_tokens", "completion_tokens",
                                                "cached_tokens", "failed_attempts"), 0)
        return self.replicas[url]

    def note_parse_failures(self, count: int) -> None:
        with self._lock:
            self.parse_failures += count

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def computed_prompt_tokens(self) -> int:
        """Prompt tokens the engine computed: the prompt tokens less the prefix-cache hits."""
        return self.prompt_tokens - self.cached_tokens

    @property
    def engine_tokens(self) -> int:
        """Tokens the engine computed: prompt tokens it prefilled plus tokens it generated."""
        return self.computed_prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "total_tokens": self.total_tokens,
            "latency_s": round(self.latency_s, 4),
            "truncated": self.truncated,
            "parse_failures": self.parse_failures,
            "errors": self.errors,
            "finish_reasons": dict(self.finish_reasons),
            **({"replicas": {url: dict(v) for url, v in self.replicas.items()}} if self.replicas else {}),
        }

    def __repr__(self) -> str:
        return f"Usage({self.to_dict()})"


@contextmanager
def track_usage(max_records: int = DEFAULT_HISTORY_LIMIT, usage: Usage | None = None):
    """Collect the usage of every LM call made inside the block (and in tasks it starts), into a new
    ``Usage`` or the given one (a subclass that does more with each record, say)."""
    usage = Usage(max_records) if usage is None else usage
    token = _active.set(_active.get() + (usage,))
    try:
        yield usage
    finally:
        _active.reset(token)


def record(rec: CallRecord) -> None:
    """Add a finished call to every open collector; it becomes this context's ``last_call()``."""
    _last.set(rec)
    for usage in _active.get():
        usage.add(rec)


def record_parse_failures(count: int) -> None:
    """Count ``count`` choices of this context's last call as unparseable."""
    rec = _last.get()
    if rec is not None:
        rec.parse_failures += count
    for usage in _active.get():
        usage.note_parse_failures(count)


def last_call() -> CallRecord | None:
    """The last call recorded in this context (this task or thread), if any."""
    return _last.get()
