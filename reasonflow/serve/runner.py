"""Running one request's program: validate, build, run under ``dspy.context``, file the trace.

``Solver.prepare(program, question, options)`` does every check that needs no LM (served program,
question length, max_tokens, options the strategy takes, the factory accepting them) and raises
``ApiError`` (422) on the first failure, so a bad request never reaches the engine. ``Solver.run``
then runs the fresh program with ``await program.acall(question=...)`` inside
``reasonflow.session(lm, disable_history=True, trace=[])`` (a ``dspy.context`` with ``StructuredAdapter``): the settings
live in a contextvar of the request's own task, so concurrent requests never see each other's LM,
options or trace listener, and DSPy keeps no per-call history that would grow with traffic.
``until_disconnect`` runs a coroutine as a task and cancels it when the client goes away, which
cancels the in-flight ``openai`` requests (the engine then stops generating for them).

Every run has a deadline (``ServeLimits.request_deadline_s``, or the request's ``options.deadline_s``
within ``max_request_deadline_s``); past it the run is cancelled and the answer is a 504. A program
that runs model-written code (``pot``) is refused with a 503 ``sandbox_unavailable`` before any LM
call when the host has no jail and nobody opted in to unisolated code. An answer that is missing or a
non-finite number is ``answer: null`` with an ``error`` saying why.

Not guaranteed: a cancelled search leaves no trace; synchronous code inside a program (a custom
module's ``forward``) blocks the event loop and cannot be interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import dspy
from starlette.types import Receive

from reasonflow.adapter import StructuredAdapter
from reasonflow import sandbox
from reasonflow.errors import (
    ConfigError, ContextOverflowError, LMError, LMRequestError, LMTimeoutError, ReasonflowError, describe,
)
from reasonflow.lm import session
from reasonflow.result import Result, plain
from reasonflow.search.base import trace_listener
from reasonflow.serve.config import ServeLimits
from reasonflow.serve.metrics import Metrics
from reasonflow.serve.programs import ServedProgram
from reasonflow.serve.schemas import SolveOptions
from reasonflow.serve.store import Store
from reasonflow.trace import Trace
from reasonflow.usage import track_usage

log = logging.getLogger("reasonflow.serve")


class ApiError(Exception):
    """An error answer: HTTP status plus OpenAI-style ``type`` and ``code``."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param


@dataclass
class Prepared:
    served: ServedProgram
    program: dspy.Module
    lm: dspy.LM
    question: str
    deadline_s: float


class Solver:
    def __init__(self, programs: dict[str, ServedProgram], lm: dspy.LM, store: Store, limits: ServeLimits,
                 metrics: Metrics | None = None):
        self.programs, self.lm, self.store, self.limits = programs, lm, store, limits
        self.metrics = metrics or Metrics(programs)
        self.adapter = StructuredAdapter()
        self.default = next(iter(programs))

    def prepare(self, program: str | None, question: str, options: SolveOptions) -> Prepared:
        """Everything checkable without the LM; ``ApiError(422)`` on the first problem."""
        name = program or self.default
        served = self.programs.get(name)
        if served is None:
            raise ApiError(422, f"unknown program {name!r}; this server serves {sorted(self.programs)}",
                           code="unknown_program", param="program")
        if not question.strip():
            raise ApiError(422, "question is empty", code="invalid_question", param="question")
        if len(question) > self.limits.max_question_chars:
            raise ApiError(422, f"question is {len(question)} characters; the limit is {self.limits.max_question_chars}",
                           code="invalid_question", param="question")
        if options.max_tokens is not None and options.max_tokens > self.limits.max_tokens:
            raise ApiError(422, f"max_tokens={options.max_tokens} is over this server's limit of {self.limits.max_tokens}",
                           code="invalid_parameter", param="max_tokens")
        deadline = options.deadline_s if options.deadline_s is not None else self.limits.request_deadline_s
        if deadline > self.limits.max_request_deadline_s:
            raise ApiError(422, f"deadline_s={deadline:g} is over this server's limit of "
                                f"{self.limits.max_request_deadline_s:g}", code="invalid_parameter", param="deadline_s")
        if served.runs_code and not sandbox.available():
            raise ApiError(503, f"program {name!r} runs model-written code and this server has no sandbox for it: "
                                f"{sandbox.isolation().reason}. The operator can install bubblewrap, or start the "
                                "server with --allow-unisolated-code", "server_error", "sandbox_unavailable")
        if problems := served.problems(options):
            raise ApiError(422, "; ".join(problems), code="invalid_option", param="options")
        try:
            built = served.build(options)
        except (ConfigError, TypeError, ValueError) as exc:
            raise ApiError(422, f"bad options for {name!r}: {exc}", code="invalid_option", param="options") from exc
        lm = self.lm.copy(max_tokens=options.max_tokens) if options.max_tokens is not None else self.lm
        return Prepared(served, built, lm, question, float(deadline))

    async def run(self, prepared: Prepared, listener: Callable[[dict], None] | None = None) -> dict[str, Any]:
        """Run the program within its deadline; return the response body (the trace is filed in the store).
        Counted in ``self.metrics`` (``reasonflow.serve.metrics``), cancelled runs included."""
        with self.metrics.observe(prepared.served.id) as seen:
            try:
                body = await asyncio.wait_for(self._run(prepared, listener, seen), timeout=prepared.deadline_s)
            except asyncio.TimeoutError as exc:
                seen["outcome"] = "request_deadline"
                raise ApiError(504, f"the request did not finish within its deadline of {prepared.deadline_s:g} s "
                                    "(options.deadline_s, or the server's request_deadline_s); it was cancelled",
                               "timeout_error", "request_deadline") from exc
            except ApiError as exc:
                seen["outcome"] = exc.code or exc.type
                raise
            seen["outcome"] = ("no_answer" if body["answer"] is None else
                               "budget_exhausted" if body["budget_exhausted"] else "answer")
            return body

    async def _run(self, prepared: Prepared, listener: Callable[[dict], None] | None, seen: dict) -> dict[str, Any]:
        token = trace_listener.set(listener)
        usage = None
        try:
            with session(prepared.lm, adapter=self.adapter, disable_history=True, trace=[]):
                with track_usage() as usage:
                    pred = await prepared.program.acall(question=prepared.question)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise as_api_error(exc) from exc
        finally:
            trace_listener.reset(token)
            seen["usage"] = usage.to_dict() if usage is not None else None
        result = Result.of(pred, program=prepared.served.id, question=prepared.question, usage=usage.to_dict(),
                           listener=listener)
        body = {
            "program": prepared.served.id,
            "answer": plain(result.answer),
            "reasoning": result.reasoning,
            "usage": result.usage or usage.to_dict(),
            "budget_exhausted": result.budget_exhausted,
            "trace_id": self.store.put(result.trace),
            "trace": _trace_dict(result.trace),
        }
        if result.error is not None:
            body["error"] = describe(result.error)
        elif result.answer is None:
            body["error"] = "the program found no answer" + (
                f" before its budget ran out ({result.exhausted_by or 'budget'})" if result.budget_exhausted else "")
        return body


def _trace_dict(trace: Trace) -> dict:
    """The trace's node-link form; a value that is not JSON (a NaN a strategy left) becomes its text."""
    try:
        return trace.to_dict()
    except ConfigError:
        graph = trace.graph
        for attrs in [graph.graph, *(a for _, a in graph.nodes(data=True)), *(a for _, _, a in graph.edges(data=True))]:
            for key, value in list(attrs.items()):
                if isinstance(value, float) and not math.isfinite(value):
                    attrs[key] = repr(value)
        return trace.to_dict()


def as_api_error(exc: BaseException) -> ApiError:
    """The HTTP answer for an error raised while a program ran."""
    name = type(exc).__name__
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, str(exc), code="context_length_exceeded")
    if isinstance(exc, ConfigError):
        return ApiError(422, str(exc), code="invalid_parameter")
    if isinstance(exc, LMTimeoutError):
        return ApiError(504, f"the model endpoint did not answer: {exc}", "upstream_error", "upstream_timeout")
    if isinstance(exc, (LMRequestError, LMError)):
        return ApiError(502, f"the model endpoint failed: {exc}", "upstream_error", name)
    if isinstance(exc, sandbox.SandboxUnavailable):
        return ApiError(503, str(exc), "server_error", "sandbox_unavailable")
    if isinstance(exc, ReasonflowError):
        return ApiError(500, str(exc), "server_error", name)
    log.exception("unexpected error while solving", exc_info=exc)
    return ApiError(500, f"internal error ({name}); see the server log", "server_error", "internal_error")


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client has disconnected (call only after the request body was read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(receive: Receive, work: Awaitable[Any]) -> tuple[bool, Any]:
    """Run ``work`` as a task; cancel it if the client disconnects first. ``(finished, result)``."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return True, task.result()
        log.info("client disconnected; cancelling its search")
        return False, None
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
