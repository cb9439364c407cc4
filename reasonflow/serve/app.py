"""``create_app(programs, ...)``: the FastAPI app behind ``reasonflow serve``.

    app = create_app(["gsm8k.cot", "gsm8k.sc@8"], base_url="http://127.0.0.1:8000/v1", api_key="KEY")
    uvicorn.run(app, host="127.0.0.1", port=8100)      # or: reasonflow serve gsm8k.cot gsm8k.sc@8

Routes: ``POST /v1/solve`` (``{program?, question, options}`` -> ``{answer, reasoning, usage, trace_id,
trace}``, the trace in node-link form), ``POST /v1/solve/stream`` (the search as SSE events, see
``reasonflow.serve.events``), ``GET /v1/traces/{id}`` (JSON, or the HTML viewer with
``?format=html``), the OpenAI-compatible ``GET /v1/models`` and ``POST /v1/chat/completions``
and ``POST /v1/completions`` (``reasonflow.serve.openai_routes``: OpenAI's error codes, 404 and 400),
``GET /metrics`` (Prometheus, ``reasonflow.serve.metrics``), ``GET /healthz`` (the process) and
``GET /readyz`` (the engine, with a 1-token completion). Guards (``reasonflow.serve.middleware``): Bearer auth when ``api_key`` is
set (all but /healthz), a body limit (413) and read timeout (408), then a concurrency limit (fast 503);
bad parameters get 422 before any LM call (400 on the OpenAI routes); every request has a deadline (504; ``ServeLimits``
``request_deadline_s``, shown at ``/v1/models``); ``pot`` programs need the sandbox (503
``sandbox_unavailable`` without it, unless ``allow_unisolated_code``). ``lm=`` replaces the engine connection (tests pass a ``ScriptedLM``).

Not guaranteed: TLS (terminate it in a proxy), persistence of traces across restarts, fairness
between clients. Graceful shutdown is uvicorn's: on SIGTERM it stops accepting and lets in-flight
requests finish (``reasonflow.serve.cli`` bounds the wait).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal, Sequence

import dspy
from fastapi import FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from reasonflow import __version__, sandbox
from reasonflow.engine.server import is_ready
from reasonflow.serve.config import ServeLimits
from reasonflow.serve.metrics import Metrics
from reasonflow.serve.events import EventStreamResponse, search_events
from reasonflow.serve.middleware import BearerAuth, BodyLimit, ConcurrencyGate, Gate, error_body
from reasonflow.serve.openai_routes import router as openai_router
from reasonflow.serve.programs import ServedProgram, load_programs
from reasonflow.serve.runner import ApiError, Solver, until_disconnect
from reasonflow.serve.schemas import SolveRequest
from reasonflow.serve.store import Store, open_store
from reasonflow.trace.html import CSP, render_html

SOLVING_PATHS = frozenset({"/v1/solve", "/v1/solve/stream", "/v1/chat/completions", "/v1/completions"})
OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})  # errors as OpenAI's: 400, not 422
log = logging.getLogger("reasonflow.serve")


@dataclass
class ServerState:
    """What the routes share, at ``app.state.reasonflow``."""

    programs: dict[str, ServedProgram]
    lm: dspy.LM
    limits: ServeLimits
    store: Store
    gate: Gate
    solver: Solver
    metrics: Metrics


def create_app(programs: Sequence[str], *, lm: dspy.LM | None = None, base_url: str | None = None,
               model: str | None = None, api_key: str | None = None, limits: ServeLimits = ServeLimits(),
               allow_unisolated_code: bool | None = None, trace_dir=None) -> FastAPI:
    """The app serving ``programs`` (registered names like ``gsm8k.sc@8``, or compiled ``.json`` paths).

    Without ``lm`` it connects to ``base_url`` (default: ``REASONFLOW_BASE_URL``, else the embedded
    engine) and ``model`` (default: the first served). Unknown programs raise ``ConfigError`` here.
    When a served program runs model-written code, the sandbox's isolation is checked now and said
    once (a warning when there is none); ``allow_unisolated_code=True`` opts in to running such code
    without a jail (default: ``REASONFLOW_ALLOW_UNISOLATED_CODE``), else those programs answer 503.
    ``trace_dir`` keeps traces as files there, shared with every server given the same directory
    (``reasonflow.serve.store.DirectoryTraceStore``); the default keeps them in memory."""
    if isinstance(programs, str):
        programs = [programs]
    served = load_programs(list(programs))
    if allow_unisolated_code is not None:
        sandbox.allow_unisolated(allow_unisolated_code)
    if any(p.runs_code for p in served.values()):
        _announce_sandbox()
    if lm is None:
        from reasonflow.lm import connect

        lm = connect(base_url, model)
    store = open_store(limits.trace_retention, trace_dir)
    metrics = Metrics(served)
    state = ServerState(served, lm, limits, store, Gate(limits.max_concurrency, SOLVING_PATHS),
                        Solver(served, lm, store, limits, metrics), metrics)
    app = FastAPI(title="reasonflow", version=__version__, description="Reasoning programs over vLLM.")
    app.state.reasonflow = state
    # add_middleware wraps: the last added runs first. Order of checks: auth, body size, concurrency.
    app.add_middleware(ConcurrencyGate, gate=state.gate)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, timeout_s=limits.body_timeout_s)
    app.add_middleware(BearerAuth, api_key=api_key)
    _add_error_handlers(app)
    _add_routes(app)
    app.include_router(openai_router)
    return app


def _announce_sandbox() -> None:
    """Say once how model-written code will run (warning when it will not, or only unisolated)."""
    line = sandbox.describe()
    if sandbox.isolation().available:
        log.info(line)
        sandbox.warm()
    else:
        log.warning(line)
        if sandbox.unisolated_allowed():
            sandbox.warm()


def _error(status: int, message: str, type_: str, code: str | None = None, param: str | None = None,
           **extra) -> JSONResponse:
    return JSONResponse({**error_body(message, type_, code, param), **extra}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.type, exc.code, exc.param)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k not in ("input", "ctx", "url")} for e in exc.errors()]
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        status = 400 if request.url.path in OPENAI_PATHS else 422
        return _error(status, message, "invalid_request_error", "invalid_parameter", where or None,
                      detail=jsonable_encoder(errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), "invalid_request_error", headers=exc.headers)


def _add_routes(app: FastAPI) -> None:
    @app.get("/healthz")
    async def healthz(request: Request) -> dict:
        gate = request.app.state.reasonflow.gate
        return {"status": "ok", "in_flight": gate.in_flight}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        rf: ServerState = request.app.state.reasonflow
        base_url = getattr(rf.lm, "base_url", None)
        if base_url is None:  # an injected LM with no endpoint (a test double) is always ready
            return JSONResponse({"ready": True, "engine": None})
        model = getattr(rf.lm, "served_model", None)
        ok = await asyncio.to_thread(is_ready, base_url, model, rf.limits.ready_timeout_s,
                                     getattr(rf.lm, "api_key", None))
        return JSONResponse({"ready": ok, "engine": base_url, "model": model}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus text exposition (``reasonflow.serve.metrics``)."""
        rf: ServerState = request.app.state.reasonflow
        return Response(rf.metrics.render(), media_type=rf.metrics.content_type)

    @app.post("/v1/solve")
    async def solve(body: SolveRequest, request: Request) -> Response:
        rf: ServerState = request.app.state.reasonflow
        prepared = rf.solver.prepare(body.program, body.question, body.options)
        finished, result = await until_disconnect(request.receive, rf.solver.run(prepared))
        return JSONResponse(result) if finished else Response(status_code=499)

    @app.post("/v1/solve/stream")
    async def solve_stream(body: SolveRequest, request: Request) -> Response:
        rf: ServerState = request.app.state.reasonflow
        prepared = rf.solver.prepare(body.program, body.question, body.options)
        return EventStreamResponse(search_events(rf.solver, prepared, rf.limits.keepalive_s, rf.limits.stream_queue))

    @app.get("/v1/traces/{trace_id}")
    async def get_trace(request: Request, trace_id: str = Path(max_length=64, pattern=r"^[0-9a-f]+$"),
                        format: Literal["json", "html"] = Query("json")) -> Response:
        trace = request.app.state.reasonflow.store.get(trace_id)
        if trace is None:
            raise ApiError(404, f"no trace {trace_id!r} (unknown, or dropped past the retention limit)",
                           code="trace_not_found")
        if format == "html":
            return HTMLResponse(render_html(trace), headers={"content-security-policy": CSP,
                                                             "x-content-type-options": "nosniff"})
        return JSONResponse(trace.to_dict())
