"""Connect DSPy to an OpenAI-compatible vLLM endpoint, with structured outputs on by default.

``connect(base_url=None, model=None, **sampling)`` returns a ``VLLMLM`` (a ``dspy.BaseLM``). With no base
URL it uses ``REASONFLOW_BASE_URL``, else the engine that ``reasonflow engine up`` left running, else it
starts the embedded engine for the life of the process. With no model it asks ``/v1/models``.
``configure(...)`` does that and installs ``StructuredAdapter`` as DSPy's adapter.

Requests go through the official ``openai`` client, one HTTP request per DSPy call, so ``n=k`` asks
vLLM for k choices in a single request. (DSPy 3.4's canonical engines send one request per
candidate, in sequence; reasonflow keeps DSPy's ``forward`` plugin contract to keep native ``n``.)
The client retries 408/409/429/5xx and connection errors with exponential backoff and honours
Retry-After; 400/401/404 are not retried. Every request leaves a ``CallRecord`` (``reasonflow.usage``).
Choices that stop at max_tokens are dropped and counted; when none is left, ``TruncatedError``. A 200
whose body is cut off, is not a chat completion, or has no choices is an ``UpstreamResponseError``.

Client CPU per call is kept near the bare ``openai`` client's (``evals/client_overhead.py``): async
requests go over aiohttp, whose connection pool stays cheap at hundreds in flight; bodies are sent
without openai's parameter transform; ``VLLMLM`` subclasses ``dspy.BaseLM``, not ``dspy.LM``, so DSPy
asks no model catalog for its capabilities and hops to no worker thread on the way.

``LMConfig(max_sequences=C)`` caps the sequences in flight (n counts n) for async calls: the search
frontier and the bench can then admit any number of questions while the engine sees a known
concurrency, which is what utilisation is measured against.

Not guaranteed: there is no response cache, so every call is a fresh sample (``n>1`` at
temperature 0 is refused, since its samples would be identical); the wall time of one call is
bounded by ``(max_retries + 1) * timeout_s`` plus backoff, not by a separate deadline; synchronous
calls bypass the ``max_sequences`` gate.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import weakref
from typing import Any

import dspy
import httpx
import openai
from dspy.clients.call_result import CallResult
from dspy.clients.execution import finalize, prepare
from dspy.utils.callback import with_callbacks
from openai.types.chat import ChatCompletion

from reasonflow.adapter import prompt_format_of
from reasonflow.config import DEFAULT_MAX_TOKENS, LMConfig
from reasonflow.errors import (
    ConfigError,
    ContextOverflowError,
    LMError,
    LMRequestError,
    LMTimeoutError,
    TruncatedError,
    UpstreamResponseError,
)
from reasonflow.usage import CallRecord, next_call_id, record


OPENAI_PARAMS = frozenset({
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "stop", "seed", "response_format",
    "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "logit_bias",
})
VLLM_EXTRA_PARAMS = frozenset({"top_k", "min_p", "repetition_penalty", "min_tokens", "structured_outputs"})
_OVERFLOW_HINTS = ("maximum context length", "context length", "too long", "max_model_len")


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


class VLLMLM(dspy.BaseLM):
    """A DSPy LM that talks to one OpenAI-compatible endpoint through the ``openai`` client."""

    def __init__(self, base_url: str, served_model: str, *, api_key: str | None = None,
                 config: LMConfig = LMConfig(), temperature: float = 0.0, max_tokens: int = DEFAULT_MAX_TOKENS,
                 **sampling: Any):
        super().__init__(f"openai/{served_model}", temperature=temperature, max_tokens=max_tokens,
                         cache=False, num_retries=config.max_retries, **sampling)
        self.base_url = base_url.rstrip("/")
        self.served_model = served_model
        self.config = config
        self.api_key = api_key or os.environ.get("REASONFLOW_API_KEY") or "EMPTY"
        self._client: openai.OpenAI | None = None
        self._aclients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._gates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # --- DSPy plugin contract ---------------------------------------------------------------
    def forward(self, prompt=None, messages=None, **kwargs):
        body, extra = self._body(prompt, messages, kwargs)
        started = time.perf_counter()
        try:
            response = chat_request(self.client, body, extra)
        except openai.OpenAIError as exc:
            raise self._failed(exc, body, started) from exc
        except json.JSONDecodeError as exc:  # a 200 whose body is cut off or not JSON
            raise UpstreamResponseError(f"{self.base_url} answered with a body that is not valid JSON "
                                        f"(cut off?): {exc}") from exc
        return self._accept(response, body, started)

    async def aforward(self, prompt=None, messages=None, **kwargs):
        body, extra = self._body(prompt, messages, kwargs)
        gate = self._gate()
        held = await gate.acquire(body.get("n", 1)) if gate else 0
        started = time.perf_counter()
        try:
            response = await chat_request(await self.aclient(), body, extra)
        except openai.OpenAIError as exc:
            raise self._failed(exc, body, started) from exc
        except json.JSONDecodeError as exc:  # a 200 whose body is cut off or not JSON
            raise UpstreamResponseError(f"{self.base_url} answered with a body that is not valid JSON "
                                        f"(cut off?): {exc}") from exc
        finally:
            if gate:
                gate.release(held)
        return self._accept(response, body, started)

    async def acall(self, prompt=None, *, messages=None, **kwargs):
        """DSPy's ``acall`` for prompt/messages calls, minus its worker-thread hop per call (it
        snapshots media files, which a text request has none of) and the pricing hop after it.
        History, callbacks and usage tracking are DSPy 3.4's own (``prepare`` and ``finalize``)."""
        if "request" in kwargs or not isinstance(prompt, (str, type(None))):
            return await super().acall(prompt, messages=messages, **kwargs)  # a dspy.lm15 Request
        return await self._acall_legacy(prompt, messages=messages, **kwargs)

    @with_callbacks
    async def _acall_legacy(self, prompt=None, *, messages=None, **kwargs):
        call = prepare(self, prompt, messages, kwargs, asynchronous=True)
        raw = await self.aforward(prompt=call.prompt, messages=call.messages, **call.kwargs)
        return finalize(self, call, CallResult.legacy(self, raw, kwargs=call.kwargs))

    def _gate(self) -> SequenceGate | None:
        """This loop's gate for ``config.max_sequences`` (shared by copies of this LM)."""
        if self.config.max_sequences is None:
            return None
        loop = asyncio.get_running_loop()
        if loop not in self._gates:
            self._gates[loop] = SequenceGate(self.config.max_sequences)
        return self._gates[loop]

    def dump_state(self) -> dict:
        state = super().dump_state()
        state.update(base_url=self.base_url, served_model=self.served_model)
        return state

    # --- clients ------------------------------------------------------------------------------
    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key,
                                         timeout=self.config.timeout_s, max_retries=self.config.max_retries,
                                         http_client=sync_http_client(self.base_url))
        return self._client

    async def aclient(self) -> openai.AsyncOpenAI:
        """This loop's async client (connection pools must not cross loops), closed and dropped
        when the loop shuts down (``asyncio.run`` and ``asyncio.Runner`` do that at their end)."""
        loop = asyncio.get_running_loop()
        entry = self._aclients.get(loop)
        if entry is None:
            client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key,
                                        timeout=self.config.timeout_s, max_retries=self.config.max_retries,
                                        http_client=async_http_client(self.base_url))
            closer = _close_at_loop_end(self._aclients, loop, client)
            entry = self._aclients[loop] = (client, closer)
            await closer.asend(None)
        return entry[0]

    # --- request and response -----------------------------------------------------------------
    def _body(self, prompt, messages, kwargs) -> tuple[dict, dict]:
        merged = {**self.kwargs, **kwargs}
        n = merged.get("n") or 1
        if not 1 <= n <= self.config.max_n:
            raise ConfigError(f"n must be in 1..{self.config.max_n}, got {n}")
        if n > 1 and not merged.get("temperature"):
            raise ConfigError(f"n={n} at temperature 0 returns {n} identical samples; set temperature > 0")
        body = {"model": self.served_model, "messages": messages or [{"role": "user", "content": prompt}]}
        body.update({k: v for k, v in merged.items() if k in OPENAI_PARAMS and v is not None})
        extra = {k: v for k, v in merged.items() if k in VLLM_EXTRA_PARAMS and v is not None}
        return body, extra

    def _accept(self, response, body: dict, started: float):
        try:
            choices = list(response.choices or [])
            kept = [c for c in choices if c.finish_reason != "length"]
            if any(not isinstance(c.message.content, (str, type(None))) for c in kept):
                raise TypeError("a choice's message content is not text")
        except (AttributeError, TypeError) as exc:
            raise UpstreamResponseError(f"{self.base_url} answered with a body that is not a chat completion: "
                                        f"{exc}") from exc
        usage = response.usage
        details = getattr(usage, "prompt_tokens_details", None)
        rec = CallRecord(
            id=next_call_id(), model=self.served_model, n=body.get("n", 1),
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            cached_tokens=(getattr(details, "cached_tokens", 0) or 0) if details else 0,
            latency_s=time.perf_counter() - started,
            finish_reasons=[c.finish_reason or "" for c in choices],
            truncated=len(choices) - len(kept),
        )
        record(rec)
        if not choices:
            raise UpstreamResponseError(f"{self.base_url} answered with no choices (choices: [])")
        if not kept:
            raw = choices[0].message.content if choices else ""
            raise TruncatedError(
                f"all {len(choices)} completion(s) stopped at max_tokens={body.get('max_tokens')}; "
                "raise max_tokens or bound the output fields", raw_text=raw or "")
        if len(kept) < len(choices):
            response = response.model_copy(update={"choices": kept})
        return response

    def _failed(self, exc: openai.OpenAIError, body: dict, started: float) -> LMError:
        record(CallRecord(id=next_call_id(), model=self.served_model, n=body.get("n", 1),
                          latency_s=time.perf_counter() - started, error=type(exc).__name__))
        retries = self.config.max_retries
        if isinstance(exc, openai.APITimeoutError):
            return LMTimeoutError(f"{self.base_url} did not answer within {self.config.timeout_s}s "
                                  f"after {retries} retries")
        if isinstance(exc, openai.APIConnectionError):
            return LMTimeoutError(f"could not reach {self.base_url} after {retries} retries: {exc}")
        if isinstance(exc, openai.APIStatusError):
            status, text = exc.status_code, _error_text(exc)
            if status in (408, 409, 429) or status >= 500:
                return LMTimeoutError(f"{self.base_url} answered {status} after {retries} retries: {text}")
            if status == 400 and any(h in text.lower() for h in _OVERFLOW_HINTS):
                return ContextOverflowError(f"prompt plus max_tokens={body.get('max_tokens')} exceed the "
                                            f"model's context: {text}", status_code=status)
            return LMRequestError(f"{self.base_url} rejected the request ({status}): {text}", status_code=status)
        return LMError(f"request to {self.base_url} failed: {exc}")


# --- transport (the HTTP layer under the openai client) -------------------------------------------
MAX_CONNECTIONS = 1024  # per async client (one per event loop); above any sequence gate in use


def chat_request(client, body: dict, extra: dict):
    """POST the chat request as is (a coroutine for an async client). ``chat.completions.create``
    first walks the body against its TypedDicts to rename aliased keys and encode files and dates,
    a large share of a call's client CPU; DSPy's bodies are plain JSON with none of those. Retries,
    timeouts, auth and error types are the client's own, as with ``create``."""
    return client.post("/chat/completions", body={**body, **extra}, cast_to=ChatCompletion,
                       options={"security": {"bearer_auth": True}})


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


def _error_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        body = body.get("message") or body.get("error") or body
        if isinstance(body, dict):
            body = body.get("message", body)
    return str(body or exc.message)[:500]


def list_models(base_url: str, api_key: str | None = None, timeout_s: float = 10.0) -> list[str]:
    """The model ids an OpenAI-compatible endpoint serves (``GET /v1/models``)."""
    return list(model_roots(base_url, api_key, timeout_s))


def model_roots(base_url: str, api_key: str | None = None, timeout_s: float = 10.0) -> dict[str, str | None]:
    """Each served model id with its directory (vLLM's ``root``: a merged model's or a LoRA
    adapter's path; None where the server does not say), from one ``GET /v1/models``."""
    client = openai.OpenAI(base_url=base_url, api_key=api_key or os.environ.get("REASONFLOW_API_KEY") or "EMPTY",
                           timeout=timeout_s, max_retries=1)
    try:
        return {m.id: getattr(m, "root", None) for m in client.models.list().data}
    except openai.OpenAIError as exc:
        raise LMTimeoutError(f"could not list models at {base_url}: {exc}") from exc


def resolve_base_url(base_url: str | None = None) -> str:
    """An explicit URL, else REASONFLOW_BASE_URL, else a running or newly started embedded engine."""
    if base_url or os.environ.get("REASONFLOW_BASE_URL"):
        return (base_url or os.environ["REASONFLOW_BASE_URL"]).rstrip("/")
    from reasonflow.engine import shared_engine

    return shared_engine().base_url


def connect(base_url: str | None = None, model: str | None = None, *, api_key: str | None = None,
            config: LMConfig = LMConfig(), **sampling: Any) -> VLLMLM:
    """A ``dspy.LM`` for the endpoint. ``model`` defaults to the first id in ``/v1/models``; for an
    engine serving LoRA adapters pass the adapter's name."""
    url = resolve_base_url(base_url)
    roots = model_roots(url, api_key)
    served = list(roots)
    if model is None:
        if not served:
            raise LMRequestError(f"{url} serves no models")
        model = served[0]
    elif model not in served:
        raise ConfigError(f"{url} does not serve {model!r}; it serves {served}")
    lm = VLLMLM(url, model, api_key=api_key, config=config, **sampling)
    # The prompt format the model was fine-tuned on, from the manifest in its directory; "json"
    # when that directory is not readable from here (set ``lm.prompt_format`` for a remote server).
    lm.prompt_format = prompt_format_of(roots[model]) if roots[model] else "json"
    return lm


def session(lm: dspy.LM, *, adapter: dspy.Adapter | None = None, **settings: Any):
    """The one way reasonflow runs programs against an LM: ``dspy.context(lm=lm, adapter=...)`` with
    ``StructuredAdapter`` by default (bounded JSON via ``response_format``). ``settings`` go to
    ``dspy.context`` too (the server adds ``disable_history=True, trace=[]``). The settings live in a
    context variable, so concurrent tasks with their own sessions never see each other's.

        with reasonflow.session(lm):
            program(question="...")
    """
    from reasonflow.adapter import StructuredAdapter

    return dspy.context(lm=lm, adapter=adapter or StructuredAdapter(), **settings)


def configure(base_url: str | None = None, model: str | None = None, **kwargs: Any) -> VLLMLM:
    """Connect and make the result DSPy's LM, with ``StructuredAdapter`` as its adapter (process-wide;
    ``session`` does the same for one block)."""
    from reasonflow.adapter import StructuredAdapter

    lm = connect(base_url, model, **kwargs)
    dspy.configure(lm=lm, adapter=StructuredAdapter())
    return lm
