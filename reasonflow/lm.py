"""Connect DSPy to an OpenAI-compatible vLLM endpoint, with structured outputs on by default.

``connect(base_url=None, model=None, **sampling)`` returns a ``VLLMLM`` (a ``dspy.BaseLM``). With no base
URL it uses ``REASONFLOW_BASE_URL``, else the engine that ``reasonflow engine up`` left running, else it
starts the embedded engine for the life of the process. With no model it asks ``/v1/models``.
``configure(...)`` does that and installs ``StructuredAdapter`` as DSPy's adapter.

Requests go through the official ``openai`` client, one HTTP request per DSPy call, so ``n=k`` asks
vLLM for k choices in a single request. DSPy 3.4 has no supported contract for that: see
``OneRequestPerCall`` below for what reasonflow relies on instead and why it pins ``dspy<3.5``.
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
concurrency, which is what utilisation is measured against. Under the cap, an ``n=k`` call is sent
as k requests of one sample each, every one through the gate on its own, and their answers are
merged into one response (choices in order, the usage as vLLM reports an ``n=k`` request: the prompt
once, every sample's completion tokens). One request would hold its k slots until its longest sample
ends: SC@8 on 40 questions then kept 0.30 of the cap running on average, split 0.77
(``evals/utilisation.py --split both``, its occupancy). vLLM computes each of the k samples' prompt on its own either way (its counters say so),
so the engine does the same work. A ``seed`` becomes seed, seed+1, ... for the k requests.
``LMConfig(split_samples=False)`` sends one request of n=k instead.

Replicas: ``connect(["http://a:8000/v1", "http://b:8000/v1"])`` (or ``REASONFLOW_BASE_URL="u1,u2"``)
gives one LM over several servers of the same model (``reasonflow.replicas``): each replica has its
own clients and gate (``max_sequences`` is then per replica), a request goes to the least-loaded
replica, a search run stays on the replica its first request went to, and a replica that refuses
connections or times out is skipped for ``replica_backoff_s`` while its requests are retried on
another within the same ``max_retries`` budget. One ``CallRecord`` per DSPy call either way (a
failed-over call names the replica that answered and the ones that failed it), so usage counts each
call once. With one URL, nothing of this runs: the openai client retries as above.

Not guaranteed: there is no response cache, so every call is a fresh sample (``n>1`` at
temperature 0 is refused, since its samples would be identical); the wall time of one call is
bounded by ``(max_retries + 1) * timeout_s`` plus backoff, not by a separate deadline; synchronous
calls bypass the ``max_sequences`` gate.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from typing import Any, Sequence

import dspy
import openai
import pydantic
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
from reasonflow.replicas import (  # noqa: F401  (SequenceGate, MAX_CONNECTIONS: re-exported)
    MAX_CONNECTIONS,
    Replica,
    ReplicaPool,
    SequenceGate,
    split_base_urls,
)
from reasonflow.usage import CallRecord, next_call_id, record


OPENAI_PARAMS = frozenset({
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "stop", "seed", "response_format",
    "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "logit_bias",
})
VLLM_EXTRA_PARAMS = frozenset({"top_k", "min_p", "repetition_penalty", "min_tokens", "structured_outputs"})
_OVERFLOW_HINTS = ("maximum context length", "context length", "too long", "max_model_len")


class OneRequestPerCall:
    """DSPy's public LM calls (``lm(...)``, ``await lm.acall(...)``) made as ONE ``forward``/``aforward``
    per call, ``n`` included; a mixin for ``dspy.BaseLM`` subclasses (``VLLMLM``, ``ScriptedLM``).

    Why: vLLM answers ``n=k`` in one request, batched (ARCHITECTURE §4: as fast as k parallel requests,
    and the k samples share one prompt prefill). DSPy 3.4.1's supported plugin contract, an engine with
    ``complete(Request) -> Response`` passed to ``dspy.LM(engine=...)``, gets one candidate per call:
    ``dspy.clients.execution.execute`` loops ``complete`` n times in sequence (its
    ``TODO(candidate-parallelism)``), and ``validate_request`` refuses ``n`` in ``Config.extensions``.
    The paths that keep a provider's native ``n`` are the ``forward()`` plugin and an engine's
    ``complete_legacy()``, both deprecated for removal in 3.5 (stanfordnlp/dspy#10366, which moved the LM
    layer onto lm15 engines; the n-on-vLLM complaint is stanfordnlp/dspy#914). Until DSPy's engine
    contract can return k candidates from one call, this mixin calls ``forward`` itself, between DSPy's
    own ``prepare`` and ``finalize`` (history, callbacks, usage tracking as DSPy does them), so the
    legacy engine wrapper, and its deprecation notice, never run for these classes; a user's own
    ``forward()`` LM still gets DSPy's notice, since no warning filter is installed. It depends on DSPy
    3.4's ``dspy.clients.execution`` and ``CallResult.legacy``; hence ``dspy-ai>=3.4,<3.5``.

    It also skips DSPy's worker-thread hop per async call (media snapshots, which a text request has
    none of). A ``dspy.lm15.Request`` call goes to DSPy's own path unchanged.
    """

    def __call__(self, prompt=None, *, messages=None, **kwargs):
        if "request" in kwargs or not isinstance(prompt, (str, type(None))):
            return super().__call__(prompt, messages=messages, **kwargs)  # a dspy.lm15 Request
        return self._call_one(prompt, messages=messages, **kwargs)

    async def acall(self, prompt=None, *, messages=None, **kwargs):
        if "request" in kwargs or not isinstance(prompt, (str, type(None))):
            return await super().acall(prompt, messages=messages, **kwargs)
        return await self._acall_one(prompt, messages=messages, **kwargs)

    @with_callbacks
    def _call_one(self, prompt=None, *, messages=None, **kwargs):
        call = prepare(self, prompt, messages, kwargs)
        raw = self.forward(prompt=call.prompt, messages=call.messages, **call.kwargs)
        return finalize(self, call, CallResult.legacy(self, raw, kwargs=call.kwargs))

    @with_callbacks
    async def _acall_one(self, prompt=None, *, messages=None, **kwargs):
        call = prepare(self, prompt, messages, kwargs, asynchronous=True)
        raw = await self.aforward(prompt=call.prompt, messages=call.messages, **call.kwargs)
        return finalize(self, call, CallResult.legacy(self, raw, kwargs=call.kwargs))


class VLLMLM(OneRequestPerCall, dspy.BaseLM):
    """A DSPy LM over one OpenAI-compatible endpoint, or over replicas serving the same model
    (``base_url`` a list or a comma-separated string; see ``reasonflow.replicas``). It declares
    JSON-schema support, so DSPy's own ``JSONAdapter`` sends structured outputs to it too."""

    supported_params = OPENAI_PARAMS | VLLM_EXTRA_PARAMS
    supports_response_schema = True

    def __init__(self, base_url: str | Sequence[str], served_model: str, *, api_key: str | None = None,
                 config: LMConfig = LMConfig(), temperature: float = 0.0, max_tokens: int = DEFAULT_MAX_TOKENS,
                 **sampling: Any):
        super().__init__(f"openai/{served_model}", temperature=temperature, max_tokens=max_tokens,
                         cache=False, num_retries=config.max_retries, **sampling)
        self.base_urls = split_base_urls(base_url)
        self.base_url = ",".join(self.base_urls)  # one URL, or the pool as REASONFLOW_BASE_URL writes it
        self.served_model = served_model
        self.config = config
        self.api_key = api_key or os.environ.get("REASONFLOW_API_KEY") or "EMPTY"
        self.pool = ReplicaPool(self.base_urls, self.api_key, config)
        self._one = self.pool.replicas[0] if len(self.pool) == 1 else None  # today's path: no pool logic

    # --- one request per DSPy call (OneRequestPerCall) -------------------------------------
    def forward(self, prompt=None, messages=None, **kwargs):
        body, extra = self._body(prompt, messages, kwargs)
        if self._one is None:
            return self._pool_forward(body, extra)
        started = time.perf_counter()
        try:
            response = chat_request(self._one.client, body, extra)
        except openai.OpenAIError as exc:
            raise self._failed(exc, body, started) from exc
        except json.JSONDecodeError as exc:  # a 200 whose body is cut off or not JSON
            raise self._not_json(exc, self.base_url) from exc
        return self._accept(response, body, started)

    async def aforward(self, prompt=None, messages=None, **kwargs):
        body, extra = self._body(prompt, messages, kwargs)
        if self._one is None:
            return await self._pool_aforward(body, extra)
        parts = await self._each_sample(self._one_aforward, body, extra)
        return self._accept(merge_samples([r for r, _ in parts]), body, min(t for _, t in parts))

    async def _one_aforward(self, body: dict, extra: dict):
        """(response, when it was sent: after the gate) for one request to the one replica."""
        gate = self._one.gate()
        held = await gate.acquire(body.get("n", 1)) if gate else 0
        started = time.perf_counter()
        try:
            return await chat_request(await self._one.aclient(), body, extra), started
        except openai.OpenAIError as exc:
            raise self._failed(exc, body, started) from exc
        except json.JSONDecodeError as exc:  # a 200 whose body is cut off or not JSON
            raise self._not_json(exc, self.base_url) from exc
        finally:
            if gate:
                gate.release(held)

    async def _each_sample(self, send, body: dict, extra: dict) -> list:
        """``send(body, extra)``'s answers: one, or under ``max_sequences`` one per sample of an
        ``n=k`` body, sent at once (each through the gate on its own). The first failure cancels
        the other samples' requests and is raised."""
        n = body.get("n", 1)
        if n == 1 or self.config.max_sequences is None or not self.config.split_samples:
            return [await send(body, extra)]
        seed = body.get("seed")
        tasks = [asyncio.ensure_future(send({**body, "n": 1, **({"seed": seed + i} if seed is not None else {})},
                                            extra)) for i in range(n)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
        failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None), None)
        if failed is not None:
            await asyncio.gather(*tasks, return_exceptions=True)
            raise failed.exception()
        return [t.result() for t in tasks]

    def dump_state(self) -> dict:
        state = super().dump_state()
        state.update(base_url=self.base_url, served_model=self.served_model)
        return state

    # --- the pool: pick a replica, fail over within the retry budget --------------------------
    def _pool_forward(self, body: dict, extra: dict):  # the blocking twin of _pool_aforward (no gate)
        n, failed, started = body.get("n", 1), [], time.perf_counter()
        while True:
            replica = self.pool.assign(n)
            try:
                response = chat_request(replica.client, body, extra)
            except (openai.OpenAIError, json.JSONDecodeError) as exc:
                delay = self._after_failure(exc, body, started, replica, failed)
            else:
                return self._accept(response, body, started, replica, failed)
            finally:
                self.pool.release(replica, n)
            time.sleep(delay)

    async def _pool_aforward(self, body: dict, extra: dict):
        parts = await self._each_sample(self._pool_one_aforward, body, extra)
        # one record per call: the replica of the first sample, every replica that failed a sample
        failed = [r for _, _, tried, _ in parts for r in tried]
        return self._accept(merge_samples([p[0] for p in parts]), body, min(p[3] for p in parts), parts[0][1],
                            failed)

    async def _pool_one_aforward(self, body: dict, extra: dict):
        """(response, the replica that answered, the replicas that failed it, when it was first sent)
        for one request."""
        n, failed, started = body.get("n", 1), [], None
        while True:
            replica = self.pool.assign(n)
            gate, held = replica.gate(), 0
            try:
                held = await gate.acquire(n) if gate else 0
                started = started or time.perf_counter()
                response = await chat_request(await replica.aclient(), body, extra)
            except (openai.OpenAIError, json.JSONDecodeError) as exc:
                delay = self._after_failure(exc, body, started, replica, failed)
            else:
                return response, replica, failed, started
            finally:
                if gate:
                    gate.release(held)
                self.pool.release(replica, n)
            await asyncio.sleep(delay)

    def _after_failure(self, exc: Exception, body: dict, started: float | None, replica: Replica,
                       failed: list) -> float:
        """The seconds to wait before the next attempt after ``exc`` on ``replica``; raises the typed
        error when it is not retried (a body that is not JSON never is)."""
        if isinstance(exc, json.JSONDecodeError):
            raise self._not_json(exc, replica.url) from exc
        delay = self._retry_delay(exc, replica, failed)
        if delay is None:
            raise self._failed(exc, body, started, replica, failed) from exc
        return delay

    def _retry_delay(self, exc: openai.OpenAIError, replica: Replica, failed: list) -> float | None:
        """After an attempt on ``replica`` failed: seconds to wait before the next attempt, or None
        when the error is not retried (400, 401, 404, ...) or the retry budget is spent. A refused
        connection or a timeout takes the replica out for its back-off; the next attempt then goes
        to another replica at once. A 408/409/429/5xx waits (Retry-After, else exponential)."""
        down = isinstance(exc, openai.APIConnectionError)  # APITimeoutError is one
        status = getattr(exc, "status_code", 0) if isinstance(exc, openai.APIStatusError) else 0
        if not down and not (status in (408, 409, 429) or status >= 500):
            return None
        failed.append(replica)
        (self.pool.mark_down if down else self.pool.note_failure)(replica)
        if len(failed) > self.config.max_retries:
            return None
        if down and self.pool.any_other_up(replica):
            return 0.0
        return retry_delay(len(failed), getattr(exc, "response", None))

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
        fmt = body.get("response_format")
        if isinstance(fmt, type) and issubclass(fmt, pydantic.BaseModel):  # DSPy's JSONAdapter sends a model class
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": fmt.__name__, "schema": fmt.model_json_schema(), "strict": True}}
        extra = {k: v for k, v in merged.items() if k in VLLM_EXTRA_PARAMS and v is not None}
        return body, extra

    @staticmethod
    def _not_json(exc: json.JSONDecodeError, where: str) -> UpstreamResponseError:
        return UpstreamResponseError(f"{where} answered with a body that is not valid JSON (cut off?): {exc}")

    def _accept(self, response, body: dict, started: float, replica: Replica | None = None, failed: list = ()):
        where = replica.url if replica else self.base_url
        try:
            choices = list(response.choices or [])
            kept = [c for c in choices if c.finish_reason != "length"]
            if any(not isinstance(c.message.content, (str, type(None))) for c in kept):
                raise TypeError("a choice's message content is not text")
        except (AttributeError, TypeError) as exc:
            raise UpstreamResponseError(f"{where} answered with a body that is not a chat completion: "
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
        if replica is not None:
            rec.replica, rec.failed_on = replica.url, [r.url for r in failed]
            self.pool.note_answer(replica, rec.n, rec.prompt_tokens, rec.completion_tokens)
        record(rec)
        if not choices:
            raise UpstreamResponseError(f"{where} answered with no choices (choices: [])")
        if not kept:
            raw = choices[0].message.content if choices else ""
            raise TruncatedError(
                f"all {len(choices)} completion(s) stopped at max_tokens={body.get('max_tokens')}; "
                "raise max_tokens or bound the output fields", raw_text=raw or "")
        if len(kept) < len(choices):
            response = response.model_copy(update={"choices": kept})
        return response

    def _failed(self, exc: openai.OpenAIError, body: dict, started: float | None, replica: Replica | None = None,
                failed: list = ()) -> LMError:
        record(CallRecord(id=next_call_id(), model=self.served_model, n=body.get("n", 1),
                          latency_s=time.perf_counter() - (started or time.perf_counter()), error=type(exc).__name__,
                          failed_on=[r.url for r in failed]))
        if replica is None:
            where, retries = self.base_url, self.config.max_retries
        else:  # a pool: say which replicas were tried
            where, retries = replica.url, max(len(failed) - 1, 0)
            if len(failed) > 1 or (failed and failed[0] is not replica):
                where += f" (attempts on {', '.join(r.url for r in failed)})"
        if isinstance(exc, openai.APITimeoutError):
            return LMTimeoutError(f"{where} did not answer within {self.config.timeout_s}s "
                                  f"after {retries} retries")
        if isinstance(exc, openai.APIConnectionError):
            return LMTimeoutError(f"could not reach {where} after {retries} retries: {exc}")
        if isinstance(exc, openai.APIStatusError):
            status, text = exc.status_code, _error_text(exc)
            if status in (408, 409, 429) or status >= 500:
                return LMTimeoutError(f"{where} answered {status} after {retries} retries: {text}")
            if status == 400 and any(h in text.lower() for h in _OVERFLOW_HINTS):
                return ContextOverflowError(f"prompt plus max_tokens={body.get('max_tokens')} exceed the "
                                            f"model's context: {text}", status_code=status)
            return LMRequestError(f"{where} rejected the request ({status}): {text}", status_code=status)
        return LMError(f"request to {where} failed: {exc}")

    # --- one replica's clients (the first replica's, for a pool) -------------------------------
    @property
    def client(self) -> openai.OpenAI:
        return self.pool.replicas[0].client

    async def aclient(self) -> openai.AsyncOpenAI:
        return await self.pool.replicas[0].aclient()

    @property
    def _aclients(self):
        return self.pool.replicas[0]._aclients


# --- transport (the HTTP layer under the openai client) -------------------------------------------
INITIAL_RETRY_DELAY_S = 0.5  # a pool's own retries, as the openai client's: 0.5 s doubling to 8 s
MAX_RETRY_DELAY_S = 8.0
MAX_RETRY_AFTER_S = 60.0  # a server's Retry-After is honoured up to this


def retry_delay(attempt: int, response=None) -> float:
    """Seconds before retry ``attempt`` (1 = the first): the response's Retry-After (seconds or an
    HTTP date) when it gives one up to ``MAX_RETRY_AFTER_S``, else exponential with 25% jitter."""
    value = response.headers.get("retry-after") if response is not None else None
    if value:
        try:
            after = float(value)
        except ValueError:
            try:
                after = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                after = None
        if after is not None and 0 <= after <= MAX_RETRY_AFTER_S:
            return after
    return min(INITIAL_RETRY_DELAY_S * 2 ** (attempt - 1), MAX_RETRY_DELAY_S) * (1 - 0.25 * random.random())


def merge_samples(responses: list):
    """One chat completion from the answers to the one-sample requests of an ``n=k`` call: their
    choices in order (indexes renumbered), the usage as vLLM reports for ``n=k`` (the prompt's
    tokens and cached tokens once, from the first; the completion tokens of all)."""
    if len(responses) == 1:
        return responses[0]
    first = responses[0]
    every = [choice for r in responses for choice in (r.choices or [])]
    choices = [choice.model_copy(update={"index": i}) for i, choice in enumerate(every)]
    usage = first.usage
    if usage is not None:
        completion = sum((getattr(r.usage, "completion_tokens", 0) or 0) for r in responses)
        usage = usage.model_copy(update={"completion_tokens": completion,
                                         "total_tokens": (usage.prompt_tokens or 0) + completion})
    return first.model_copy(update={"choices": choices, "usage": usage})


def chat_request(client, body: dict, extra: dict):
    """POST the chat request as is (a coroutine for an async client). ``chat.completions.create``
    first walks the body against its TypedDicts to rename aliased keys and encode files and dates,
    a large share of a call's client CPU; DSPy's bodies are plain JSON with none of those. Retries,
    timeouts, auth and error types are the client's own, as with ``create``."""
    return client.post("/chat/completions", body={**body, **extra}, cast_to=ChatCompletion,
                       options={"security": {"bearer_auth": True}})


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


def resolve_base_url(base_url: str | Sequence[str] | None = None) -> str:
    """An explicit URL (or replicas: a list or "u1,u2"), else REASONFLOW_BASE_URL, else a running or
    newly started embedded engine. Replicas come back as one comma-separated string."""
    given = base_url or os.environ.get("REASONFLOW_BASE_URL")
    if given:
        return ",".join(split_base_urls(given))
    from reasonflow.engine import shared_engine

    return shared_engine().base_url


def connect(base_url: str | Sequence[str] | None = None, model: str | None = None, *, api_key: str | None = None,
            config: LMConfig = LMConfig(), **sampling: Any) -> VLLMLM:
    """A ``dspy.LM`` for the endpoint, or for replicas of one model (a list of URLs, or one string
    of comma-separated URLs): every replica must answer ``/v1/models`` and serve the model. ``model``
    defaults to the first id the first replica serves; for LoRA adapters pass the adapter's name."""
    urls = split_base_urls(resolve_base_url(base_url))
    roots = model_roots(urls[0], api_key)
    served = list(roots)
    if model is None:
        if not served:
            raise LMRequestError(f"{urls[0]} serves no models")
        model = served[0]
    elif model not in served:
        raise ConfigError(f"{urls[0]} does not serve {model!r}; it serves {served}")
    for url in urls[1:]:
        others = list(model_roots(url, api_key))
        if model not in others:
            raise ConfigError(f"replica {url} does not serve {model!r} (it serves {others}); every replica "
                              "must serve the same model")
    lm = VLLMLM(urls, model, api_key=api_key, config=config, **sampling)
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
