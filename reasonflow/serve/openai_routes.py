"""OpenAI-compatible routes: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Each served program is a "model". A chat request's last user message is the question, the program's
answer is the assistant message's ``content`` (its reasoning is in ``reasoning_content``, as vLLM's
reasoning parsers do, and the trace id in ``trace_id``). ``temperature`` and ``max_tokens`` (or
``max_completion_tokens``) map onto program options; any other option goes in ``options`` (the openai
client's ``extra_body={"options": {...}}``). ``n`` runs n independent solves. With ``stream=true``
the reply is SSE chunks: the role at once, each choice's answer when its search ends, then
``finish_reason`` and ``[DONE]`` (plus a usage chunk with ``stream_options.include_usage``).

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY")
    client.chat.completions.create(model="gsm8k.sc@8", messages=[{"role": "user", "content": "..."}])

A choice that has no answer (the model's output was truncated, unparseable or not a finite number,
the upstream sent no choices, or the budget ran out first) says so: its ``content`` is null, its
``finish_reason`` is ``"error"`` and it carries an ``error`` object; when no choice has an answer the
whole reply is a 502 ``no_answer`` error instead. ``GET /v1/models`` also shows the server's limits
(``limits.request_deadline_s`` and the rest) and, per program, whether it runs model-written code and
whether this server can run it (``available``).

Not guaranteed: token-by-token streaming (the answer exists only when the search ends), system
prompts, tools, logprobs or earlier turns (only the last user message is used).
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
from reasonflow.serve.schemas import ChatRequest

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


def _prepare(request: Request, body: ChatRequest) -> list[Prepared]:
    rf = request.app.state.reasonflow
    if body.model not in rf.programs:
        raise ApiError(422, f"unknown model {body.model!r}; this server serves {sorted(rf.programs)}",
                       code="model_not_found", param="model")
    question = body.question()
    if question is None:
        raise ApiError(422, "messages has no user message to answer", param="messages")
    if body.n > rf.limits.max_choices:
        raise ApiError(422, f"n={body.n} is over this server's limit of {rf.limits.max_choices}", param="n")
    options = body.solve_options()
    return [rf.solver.prepare(body.model, question, options) for _ in range(body.n)]


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


def _choice(i: int, result: dict) -> dict:
    message = {"role": "assistant", "content": _content(result), "reasoning_content": result["reasoning"]}
    choice = {"index": i, "finish_reason": "stop", "trace_id": result["trace_id"], "message": message}
    if message["content"] is None:
        choice.update(finish_reason="error", error=_no_answer(result))
    return choice


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Response:
    rf = request.app.state.reasonflow
    prepared = _prepare(request, body)
    completion_id = f"chatcmpl-{secrets.token_hex(12)}"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return EventStreamResponse(_chunks(rf.solver, prepared, completion_id, body.model, include_usage,
                                           rf.limits.keepalive_s))
    finished, results = await until_disconnect(request.receive, asyncio.gather(*(rf.solver.run(p) for p in prepared)))
    if not finished:
        return Response(status_code=499)
    choices = [_choice(i, r) for i, r in enumerate(results)]
    if all(c["finish_reason"] == "error" for c in choices):
        first = choices[0]["error"]
        message = first["message"] if len(choices) == 1 else f"no choice has an answer; the first: {first['message']}"
        return JSONResponse({"error": {**first, "message": message},
                             "trace_ids": [r["trace_id"] for r in results]}, status_code=502)
    return JSONResponse({"id": completion_id, "object": "chat.completion", "created": int(time.time()),
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
                    err = as_api_error(exc)
                    yield sse(None, {"error": {"message": err.message, "type": err.type, "code": err.code}})
                    return
                results.append(result)
                content = _content(result)
                if content is None:  # no answer: no content chunk, and a finish that says why
                    yield _chunk(completion_id, model, [{"index": i, "delta": {"reasoning_content": result["reasoning"]},
                                                         "finish_reason": None}])
                    yield _chunk(completion_id, model, [{"index": i, "delta": {}, "finish_reason": "error",
                                                         "trace_id": result["trace_id"],
                                                         "error": _no_answer(result)}])
                    continue
                delta = {"content": content, "reasoning_content": result["reasoning"]}
                yield _chunk(completion_id, model, [{"index": i, "delta": delta, "finish_reason": None}])
                yield _chunk(completion_id, model, [{"index": i, "delta": {}, "finish_reason": "stop",
                                                     "trace_id": result["trace_id"]}])
        if include_usage:
            yield _chunk(completion_id, model, [], usage=_usage(results))
        yield "data: [DONE]\n\n"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
