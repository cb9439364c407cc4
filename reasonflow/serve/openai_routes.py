"""OpenAI-compatible routes: ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``.

Each served program is a "model". A chat request is ONE user message, the question; the program's
answer is the assistant message's ``content``, its reasoning is in ``reasoning`` (vLLM's current name)
and ``reasoning_content`` (the older one, for older clients), and the trace id in ``trace_id``. System
messages and earlier turns are refused with a 400 ``unsupported_messages``, not dropped: a program is a
fixed signature over the question (``question -> answer``), and there is no field a system prompt or a
conversation could go into without changing what was compiled and measured. Put the whole question in
the one user message. ``/v1/completions`` takes the question as ``prompt`` (a string, or a list of one).
``temperature`` and ``max_tokens`` (or ``max_completion_tokens``) map onto program options; any other
option goes in ``options`` (the openai client's ``extra_body={"options": {...}}``). ``n`` runs n
independent solves. With ``stream=true`` a chat reply is SSE chunks: the role at once, each choice's
answer when its search ends, then ``finish_reason`` and ``[DONE]`` (plus a usage chunk with
``stream_options.include_usage``).

    client = openai.OpenAI(base_url="http://127.0.0.1:8100/v1", api_key="KEY")
    client.chat.completions.create(model="gsm8k.sc@8", messages=[{"role": "user", "content": "..."}])

Errors are OpenAI's: ``{"error": {"message", "type", "param", "code"}}``, 404 ``model_not_found`` for a
model this server does not serve and 400 for a bad request (a field out of range, an option the
program's strategy does not take), so the openai client raises ``NotFoundError`` and
``BadRequestError``. (reasonflow's own ``/v1/solve`` keeps 422 for those.)

``finish_reason`` is ``"stop"`` for an answer, ``"length"`` for an answer found as the search budget
ran out (the best so far, which a longer budget may change), and ``"error"`` for a choice with no
answer (the model's output was truncated, unparseable or not a finite number, the upstream sent no
choices, or the budget ran out first): its ``content`` is null and it carries an ``error`` object.
When no choice has an answer the whole reply is a 502 ``no_answer`` error instead. ``GET /v1/models``
also shows the server's limits (``limits.request_deadline_s`` and the rest) and, per program, whether
it runs model-written code and whether this server can run it (``available``).

Not guaranteed: token-by-token streaming (the answer exists only when the search ends), streaming on
``/v1/completions`` (400), tools, logprobs.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from reasonflow import sandbox
from reasonflow.serve.events import EventStreamResponse, sse
from reasonflow.serve.runner import ApiError, Prepared, as_api_error, until_disconnect
from reasonflow.serve.schemas import ChatRequest, CompletionRequest

router = APIRouter()
CREATED = int(time.time())


@router.get("/v1/models")
async def list_models(request: Request) -> dict:
    rf = request.app.state.reasonflow
    code_ok = None if not any(p.runs_code for p in rf.programs.values()) else sandbox.available()
    return {"object": "list", "limits": rf.limits.public(), "data": [
        {"id": p.id, "object": "model", "created": CREATED, "owned_by": "reasonflow",
         "strategy": p.strategy, "description": p.description, "runs_code": p.runs_code,
         "available": code_ok if p.runs_code else True} for p in rf.programs.values()]}


def openai_error(exc: ApiError) -> ApiError:
    """An error as OpenAI answers it: a 422 (reasonflow's own API) is a 400 here."""
    return ApiError(400, exc.message, exc.type, exc.code, exc.param) if exc.status == 422 else exc


def _check_model(request: Request, model: str) -> None:
    rf = request.app.state.reasonflow
    if model not in rf.programs:
        raise ApiError(404, f"The model {model!r} does not exist; this server serves {sorted(rf.programs)}",
                       code="model_not_found", param="model")


def _question(body: ChatRequest) -> str:
    """The one user message's text; a 400 for anything else (see the module docstring)."""
    roles = [m.role for m in body.messages]
    if roles != ["user"]:
        raise ApiError(400, f"this server answers exactly one user message, the question; got roles {roles}. "
                            "System messages and earlier turns are not passed to programs: put the whole "
                            "question in one user message", code="unsupported_messages", param="messages")
    return body.messages[0].text()


def _prepare(request: Request, model: str, question: str, n: int, options) -> list[Prepared]:
    rf = request.app.state.reasonflow
    if n > rf.limits.max_choices:
        raise ApiError(400, f"n={n} is over this server's limit of {rf.limits.max_choices}", param="n")
    try:
        return [rf.solver.prepare(model, question, options) for _ in range(n)]
    except ApiError as exc:
        raise openai_error(exc) from exc


async def _solve_all(request: Request, prepared: list[Prepared]) -> list[dict] | None:
    """Every choice's result; None when the client went away first."""
    rf = request.app.state.reasonflow
    try:
        finished, results = await until_disconnect(request.receive,
                                                   asyncio.gather(*(rf.solver.run(p) for p in prepared)))
    except ApiError as exc:
        raise openai_error(exc) from exc
    return results if finished else None


def _no_answer_reply(choices: list[dict], results: list[dict]) -> JSONResponse | None:
    """The 502 when no choice has an answer, else None."""
    if not all(c["finish_reason"] == "error" for c in choices):
        return None
    first = choices[0]["error"]
    message = first["message"] if len(choices) == 1 else f"no choice has an answer; the first: {first['message']}"
    return JSONResponse({"error": {**first, "message": message},
                         "trace_ids": [r["trace_id"] for r in results]}, status_code=502)


def _usage(results: list[dict]) -> dict:
    prompt = sum(r["usage"].get("prompt_tokens", 0) for r in results)
    completion = sum(r["usage"].get("completion_tokens", 0) for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _content(result: dict) -> str | None:
    """The answer as message text (a whole-number float as an integer: 18.0 -> "18"); None without one."""
    answer = result["answer"]
    if isinstance(answer, float) and answer.is_integer() and abs(answer) < 1e15:
        return str(int(answer))
    return None if answer is None else str(answer)


def _no_answer(result: dict) -> dict:
    """The error object of a choice without an answer."""
    message = result.get("error") or "the program found no answer"
    return {"message": str(message), "type": "upstream_error", "param": None, "code": "no_answer"}


def finish_reason(result: dict) -> str:
    """``stop``, ``length`` (an answer as the budget ran out) or ``error`` (no answer)."""
    if _content(result) is None:
        return "error"
    return "length" if result.get("budget_exhausted") else "stop"


def _choice(i: int, result: dict) -> dict:
    message = {"role": "assistant", "content": _content(result), "reasoning": result["reasoning"],
               "reasoning_content": result["reasoning"]}
    choice = {"index": i, "finish_reason": finish_reason(result), "trace_id": result["trace_id"], "message": message}
    if choice["finish_reason"] == "error":
        choice["error"] = _no_answer(result)
    return choice


def _text_choice(i: int, result: dict) -> dict:
    choice = {"index": i, "text": _content(result), "logprobs": None, "finish_reason": finish_reason(result),
              "reasoning": result["reasoning"], "trace_id": result["trace_id"]}
    if choice["finish_reason"] == "error":
        choice["error"] = _no_answer(result)
    return choice


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Response:
    """OpenAI's chat completions: ONE user message (the question) in, the program's answer out. System
    messages and earlier turns get a 400 ``unsupported_messages`` (see the module docstring)."""
    rf = request.app.state.reasonflow
    _check_model(request, body.model)
    prepared = _prepare(request, body.model, _question(body), body.n, body.solve_options())
    completion_id = f"chatcmpl-{secrets.token_hex(12)}"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return EventStreamResponse(_chunks(rf.solver, prepared, completion_id, body.model, include_usage,
                                           rf.limits.keepalive_s))
    results = await _solve_all(request, prepared)
    if results is None:
        return Response(status_code=499)
    choices = [_choice(i, r) for i, r in enumerate(results)]
    return _no_answer_reply(choices, results) or JSONResponse(
        {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": body.model,
         "choices": choices, "usage": _usage(results), "trace_ids": [r["trace_id"] for r in results]})


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    """OpenAI's (legacy) completions: ``prompt`` is the question, ``choices[].text`` the answer; the
    same options, ``n``, ``finish_reason`` and errors as chat. No streaming (400)."""
    _check_model(request, body.model)
    if body.stream:
        raise ApiError(400, "stream=true is not supported on /v1/completions; use /v1/chat/completions",
                       code="unsupported_parameter", param="stream")
    prepared = _prepare(request, body.model, body.question(), body.n, body.solve_options())
    results = await _solve_all(request, prepared)
    if results is None:
        return Response(status_code=499)
    choices = [_text_choice(i, r) for i, r in enumerate(results)]
    return _no_answer_reply(choices, results) or JSONResponse(
        {"id": f"cmpl-{secrets.token_hex(12)}", "object": "text_completion", "created": int(time.time()),
         "model": body.model, "choices": choices, "usage": _usage(results),
         "trace_ids": [r["trace_id"] for r in results]})


def _chunk(completion_id: str, model: str, choices: list[dict], **extra: Any) -> str:
    return sse(None, {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                      "model": model, "choices": choices, **extra})


async def _chunks(solver, prepared: list[Prepared], completion_id: str, model: str, include_usage: bool,
                  keepalive_s: float) -> AsyncIterator[str]:
    """Role chunks, then each choice's answer as its search finishes, then usage and [DONE]."""
    for i in range(len(prepared)):
        yield _chunk(completion_id, model, [{"index": i, "delta": {"role": "assistant", "content": ""},
                                             "finish_reason": None}])
    tasks = {asyncio.ensure_future(solver.run(p)): i for i, p in enumerate(prepared)}
    pending, results = set(tasks), []
    try:
        while pending:
            done, pending = await asyncio.wait(pending, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                yield ": keep-alive\n\n"
            for task in done:
                i = tasks[task]
                try:
                    result = task.result()
                except Exception as exc:
                    err = openai_error(as_api_error(exc))
                    yield sse(None, {"error": {"message": err.message, "type": err.type, "param": err.param,
                                               "code": err.code}})
                    return
                results.append(result)
                content = _content(result)
                reasoning = {"reasoning": result["reasoning"], "reasoning_content": result["reasoning"]}
                if content is None:  # no answer: no content chunk, and a finish that says why
                    yield _chunk(completion_id, model, [{"index": i, "delta": reasoning, "finish_reason": None}])
                    yield _chunk(completion_id, model, [{"index": i, "delta": {}, "finish_reason": "error",
                                                         "trace_id": result["trace_id"],
                                                         "error": _no_answer(result)}])
                    continue
                yield _chunk(completion_id, model, [{"index": i, "delta": {"content": content, **reasoning},
                                                     "finish_reason": None}])
                yield _chunk(completion_id, model, [{"index": i, "delta": {}, "finish_reason": finish_reason(result),
                                                     "trace_id": result["trace_id"]}])
        if include_usage:
            yield _chunk(completion_id, model, [], usage=_usage(results))
        yield "data: [DONE]\n\n"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
