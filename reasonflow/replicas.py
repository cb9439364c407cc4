"""Several OpenAI-compatible endpoints serving one model behind one LM: replicas, load, health, affinity.

``ReplicaPool(urls, ...)`` is what ``reasonflow.lm.VLLMLM`` holds: one ``Replica`` per endpoint, each
with its own sync client, async client and sequence gate per event loop, and its own counters. A
request goes to the replica with the fewest sequences assigned (in flight or waiting at its gate; a
request with n=k counts k; ties go to the earlier URL). Inside ``replica_affinity()`` (every search
run opens one: ``reasonflow.search.base``) the first request of the run pins the replica it was given,
and the rest of the run follows it, so the run's shared prefixes hit one prefix cache. A replica that
refuses a connection or times out is marked down for ``LMConfig.replica_backoff_s``
(``DEFAULT_REPLICA_BACKOFF_S``); pinned runs then move to the least-loaded replica that is up, and
requests only go back to it once the back-off has passed (the next request there is the probe).

    lm = reasonflow.connect(["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"])
    # or REASONFLOW_BASE_URL="http://10.0.0.1:8000/v1,http://10.0.0.2:8000/v1"
    lm.pool.stats()   # per replica: in flight, up or down, calls, tokens, failures

Not guaranteed: the replicas are trusted to serve the same model (``connect`` checks the name, not the
weights); a run pinned to a replica that stays up but slow is not moved; the load figure is this
process's own, not the server's queue (other clients of the same server are not seen).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Sequence

import httpx
import openai

from reasonflow.config import LMConfig, MAX_REPLICAS
from reasonflow.errors import ConfigError

MAX_CONNECTIONS = 1024  # per async client (one per replica and event loop); above any sequence gate in use

# The replica each pool's requests stick to in the current search run: {pool: replica}. A mutable dict
# set once at the run's start, so the run's concurrent tasks (which copy the context) share it.
_affinity: ContextVar[dict | None] = ContextVar("reasonflow_replica_affinity", default=None)


@contextmanager
def replica_affinity() -> Iterator[None]:
    """Requests made inside (and in tasks started inside) stay on one replica of each pool, unless it
    fails. Nested blocks keep the outer block's pins: a search inside a search stays put."""
    if _affinity.get() is not None:
        yield
        return
    token = _affinity.set({})
    try:
        yield
    finally:
        _affinity.reset(token)


def split_base_urls(base_url: str | Sequence[str]) -> tuple[str, ...]:
    """``"u1,u2"`` or ``["u1", "u2"]`` -> ("u1", "u2"): stripped, trailing slashes dropped, empty
    entries skipped; duplicates and more than ``MAX_REPLICAS`` are a ``ConfigError``."""
    items = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    if any(not isinstance(item, str) for item in items):
        raise ConfigError(f"base_url takes URL strings, got {base_url!r}")
    urls = tuple(item.strip().rstrip("/") for item in items if item and item.strip())
    if not urls:
        raise ConfigError(f"no base URL given in {base_url!r}")
    if len(set(urls)) < len(urls):
        raise ConfigError(f"a base URL is listed twice in {list(urls)}")
    if len(urls) > MAX_REPLICAS:
        raise ConfigError(f"at most {MAX_REPLICAS} replicas (MAX_REPLICAS), got {len(urls)}")
    return urls


def _verify(base_url: str) -> bool:
    """A plain-http URL needs no CA bundle: loading one costs tens of ms per client."""
    return base_url.startswith("https:")


def sync_http_client(base_url: str) -> openai.DefaultHttpxClient:
    return openai.DefaultHttpxClient(verify=_verify(base_url))


def async_http_client(base_url: str) -> openai.DefaultAioHttpClient:
    """The openai client over aiohttp: httpx's pool scans every connection for every request, which
    costs milliseconds per call at hundreds in flight; aiohttp's connector does not."""
    return openai.DefaultAioHttpClient(limits=httpx.Limits(max_connections=MAX_CONNECTIONS), verify=_verify(base_url))


async def _close_at_loop_end(clients: weakref.WeakKeyDictionary, loop, client: openai.AsyncOpenAI):
    """An async generator the loop finalises in ``shutdown_asyncgens``: the client (which holds the
    loop) is dropped and its connections closed, so neither the loop nor its sockets outlive it."""
    try:
        yield
    finally:
        clients.pop(loop, None)
        await client.close()


class SequenceGate:
    """At most ``limit`` sequences in flight on one event loop; a request for n waits until n fit
    (a request larger than the limit waits for an empty gate). Waiters are woken together and
    re-check, so a small request may pass a large one: throughput first, not strict FIFO."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self._waiters: list[asyncio.Future] = []

    async def acquire(self, n: int) -> int:
        n = min(n, self.limit)
        while self.used + n > self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.used += n
        return n

    def release(self, n: int) -> None:
        self.used -= n
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class Replica:
    """One endpoint: its clients (``client_retries`` retries inside the openai client), its gates,
    the sequences assigned to it, when it may be tried again, and what it has answered."""

    def __init__(self, url: str, api_key: str, config: LMConfig, client_retries: int):
        self.url, self.api_key, self.config, self.client_retries = url, api_key, config, client_retries
        self._client: openai.OpenAI | None = None
        self._aclients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._gates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.in_flight = 0  # sequences assigned: waiting at its gate or sent
        self.down_until = 0.0  # time.monotonic() before which it is not tried (unless all are down)
        self.calls = self.sequences = self.prompt_tokens = self.completion_tokens = self.failures = 0

    def up(self, now: float) -> bool:
        return now >= self.down_until

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(base_url=self.url, api_key=self.api_key, timeout=self.config.timeout_s,
                                         max_retries=self.client_retries, http_client=sync_http_client(self.url))
        return self._client

    async def aclient(self) -> openai.AsyncOpenAI:
        """This loop's async client (connection pools must not cross loops), closed and dropped
        when the loop shuts down (``asyncio.run`` and ``asyncio.Runner`` do that at their end)."""
        loop = asyncio.get_running_loop()
        entry = self._aclients.get(loop)
        if entry is None:
            client = openai.AsyncOpenAI(base_url=self.url, api_key=self.api_key, timeout=self.config.timeout_s,
                                        max_retries=self.client_retries, http_client=async_http_client(self.url))
            closer = _close_at_loop_end(self._aclients, loop, client)
            entry = self._aclients[loop] = (client, closer)
            await closer.asend(None)
        return entry[0]

    def gate(self):
        """This loop's gate for ``config.max_sequences`` (a cap per replica), or None."""
        if self.config.max_sequences is None:
            return None
        loop = asyncio.get_running_loop()
        if loop not in self._gates:
            self._gates[loop] = SequenceGate(self.config.max_sequences)
        return self._gates[loop]


class ReplicaPool:
    """The replicas of one LM (shared by its copies). With one replica the LM keeps the openai
    client's own retries and never consults the pool's load or health."""

    def __init__(self, urls: Sequence[str], api_key: str, config: LMConfig):
        self.urls = tuple(urls)
        retries = config.max_retries if len(self.urls) == 1 else 0  # a pool retries itself, elsewhere
        self.replicas = [Replica(url, api_key, config, retries) for url in self.urls]
        self.backoff_s = config.replica_backoff_s
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.replicas)

    def assign(self, n: int) -> Replica:
        """The run's pinned replica if it is up, else the least-loaded one that is up (the one whose
        back-off ends first when none is); it becomes the run's pin. Its load goes up by ``n``."""
        pins = _affinity.get()
        with self._lock:
            now = time.monotonic()
            replica = pins.get(self) if pins is not None else None
            if replica is None or not replica.up(now):
                ready = [r for r in self.replicas if r.up(now)]
                replica = (min(ready, key=lambda r: r.in_flight) if ready
                           else min(self.replicas, key=lambda r: r.down_until))
                if pins is not None:
                    pins[self] = replica
            replica.in_flight += n
            return replica

    def release(self, replica: Replica, n: int) -> None:
        with self._lock:
            replica.in_flight -= n

    def mark_down(self, replica: Replica) -> None:
        with self._lock:
            replica.failures += 1
            replica.down_until = time.monotonic() + self.backoff_s

    def note_failure(self, replica: Replica) -> None:
        with self._lock:
            replica.failures += 1

    def note_answer(self, replica: Replica, n: int, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            replica.calls += 1
            replica.sequences += n
            replica.prompt_tokens += prompt_tokens
            replica.completion_tokens += completion_tokens

    def any_other_up(self, replica: Replica) -> bool:
        now = time.monotonic()
        return any(r is not replica and r.up(now) for r in self.replicas)

    def stats(self) -> list[dict]:
        """Per replica, since this LM was made: load now, health, answers, tokens, failed attempts."""
        now = time.monotonic()
        with self._lock:
            return [{"url": r.url, "in_flight": r.in_flight, "up": r.up(now),
                     "down_for_s": round(max(r.down_until - now, 0.0), 3), "calls": r.calls,
                     "sequences": r.sequences, "prompt_tokens": r.prompt_tokens,
                     "completion_tokens": r.completion_tokens, "failures": r.failures} for r in self.replicas]
