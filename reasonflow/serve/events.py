"""Server-sent events: the search as it runs (``POST /v1/solve/stream``), and the SSE response itself.

A search's ``Trace`` calls its listener synchronously on every change; ``EventQueue`` is that
listener (set through ``reasonflow.search.base.trace_listener`` for the request's task only) and turns each
change into an SSE event on an ``asyncio.Queue``:

    expanded   a node joined the tree (its parent was expanded); data: the node with parent, action
    scored     a node got a score;                                data: {id, score, ...}
    pruned     a node was pruned;                                 data: {id, status, reason?}
    update     any other change (status selected/terminal/answer, usage on a node)
    answer     the search finished;                               data: {answer, usage, budget_exhausted, answer_node}
    done       the server's result;                               data: {answer, reasoning, usage, trace_id, ...}
    error      the request failed;                                data: {"error": {message, type, code}}

Every event carries an ``id:`` (its sequence number). While nothing happens the stream sends an SSE
comment every ``keepalive_s``. ``EventStreamResponse`` always watches for the client leaving and, when
it does, closes the generator, which cancels the search and its in-flight LM requests.

Not guaranteed: past ``stream_queue`` buffered events (a client reading slower than the search
writes), ``update`` events are dropped and counted in ``done``'s ``dropped_events``; node, score,
prune and answer events are always kept.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from reasonflow.serve.runner import ApiError, Prepared, Solver, as_api_error

DONE = object()
KEPT_ALWAYS = frozenset({"expanded", "scored", "pruned", "answer"})


def sse(event: str | None, data: Any, event_id: int | None = None) -> str:
    """One SSE frame (``data`` as compact JSON, or verbatim when it is a str)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), default=str)
    head = (f"id: {event_id}\n" if event_id is not None else "") + (f"event: {event}\n" if event else "")
    return head + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n"


def classify(change: dict) -> str:
    """The SSE event name for one trace listener event."""
    kind = change.get("type")
    if kind == "node":
        return "expanded"
    if kind == "answer":
        return "answer"
    if change.get("status") == "pruned":
        return "pruned"
    if "score" in change:
        return "scored"
    return "update"


class EventQueue:
    """The trace listener of one streamed request."""

    def __init__(self, max_events: int):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.max_events = max_events
        self.dropped = 0

    def __call__(self, change: dict) -> None:
        name = classify(change)
        if self.queue.qsize() >= self.max_events and name not in KEPT_ALWAYS:
            self.dropped += 1
            return
        data = change.get("node", change) if name == "expanded" else change
        self.queue.put_nowait((name, {k: v for k, v in data.items() if k != "type"}))

    def close(self, _task=None) -> None:
        self.queue.put_nowait(DONE)


async def search_events(solver: Solver, prepared: Prepared, keepalive_s: float, max_events: int) -> AsyncIterator[str]:
    """The SSE frames of one streamed solve; cancelling the iteration cancels the search."""
    events = EventQueue(max_events)
    task = asyncio.ensure_future(solver.run(prepared, listener=events))
    task.add_done_callback(events.close)
    seq = 0
    try:
        while True:
            try:
                item = await asyncio.wait_for(events.queue.get(), timeout=keepalive_s)
            except asyncio.TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if item is DONE:
                break
            yield sse(item[0], item[1], seq)
            seq += 1
        try:
            result = task.result()
        except Exception as exc:  # the stream has started: the error goes out as an event
            err = exc if isinstance(exc, ApiError) else as_api_error(exc)
            yield sse("error", {"error": {"message": err.message, "type": err.type, "code": err.code}}, seq)
            return
        result.pop("trace", None)  # it is at GET /v1/traces/{trace_id}; the events already told it
        yield sse("done", {**result, "dropped_events": events.dropped}, seq)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` that always listens for the client leaving (whatever the ASGI spec version
    the server speaks) and then closes the body iterator, so its ``finally`` blocks run at once."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str], **kwargs):
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no", **kwargs.pop("headers", {})}
        super().__init__(content, headers=headers, **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:
                async def stream() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:  # the client is gone mid-write
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()
        finally:
            closer = getattr(self.body_iterator, "aclose", None)
            if closer is not None:
                with anyio.CancelScope(shield=True):
                    await closer()
