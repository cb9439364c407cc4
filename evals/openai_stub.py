"""The OpenAI-compatible stub engine that the client-side evals measure against (aiohttp, loopback).

``stub_app(content, gate=None)`` answers ``POST /v1/chat/completions`` with ``n`` choices of
``content(body)`` (an optional ``gate(body)`` async context runs around the answer: a latency, a
capacity limit) and ``GET /v1/models`` with one model, ``stub``. It does as little as a server can, so
what a script measures is the client.
"""

from __future__ import annotations


def stub_app(content, gate=None, usage=(50, 10)):
    from aiohttp import web

    async def chat(request):
        body = await request.json()
        if gate is not None:
            async with gate(body):
                pass
        return web.json_response({
            "id": "stub", "object": "chat.completion", "created": 0, "model": body.get("model", "stub"),
            "choices": [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": content(body)}}
                        for i in range(body.get("n") or 1)],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}})

    async def models(request):
        return web.json_response({"object": "list", "data": [{"id": "stub", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app
