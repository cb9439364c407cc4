"""Pure ASGI middleware for the server's guards: Bearer auth, request body, concurrency gate.

They run in that order, before FastAPI parses anything: a request without the right token gets 401;
then the whole body is read, bounded in size (413, at once by its Content-Length, or while a chunked
body arrives) and in time (408 when it has not all arrived within ``body_timeout_s``); only then does
a solving request count against the concurrency limit, and past it gets an immediate 503 with
``Retry-After``. So clients that send half a body hold no solving slot. Errors use OpenAI's shape,
``{"error": {"message", "type", "code"}}``, so OpenAI clients raise typed errors.

The API key is compared in constant time: both sides are hashed with SHA-256 and the digests are
compared with ``hmac.compare_digest``, so neither the key's content nor its length shows in timing.

Not guaranteed: protection from clients that trickle their headers (uvicorn reads those) or from
floods of cheap requests; put a reverse proxy in front for those. Health (``/healthz``) is
deliberately open.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from hmac import compare_digest
from typing import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = frozenset({"/healthz"})


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


async def send_error(send: Send, status: int, message: str, type_: str, code: str | None = None,
                     headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(error_body(message, type_, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class BearerAuth:
    """401 unless ``Authorization: Bearer <api_key>`` (every path except ``OPEN_PATHS``)."""

    def __init__(self, app: ASGIApp, api_key: str | None, open_paths: frozenset[str] = OPEN_PATHS):
        self.app = app
        self.key_digest = _digest(api_key.encode()) if api_key else None
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.key_digest is None or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        scheme, _, token = (_header(scope, b"authorization") or b"").strip().partition(b" ")
        # Always hash and compare, whatever the scheme, so a malformed header costs the same time.
        ok = compare_digest(_digest(token.strip()), self.key_digest)
        if ok and scheme.lower() == b"bearer":
            return await self.app(scope, receive, send)
        await send_error(send, 401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                         "authentication_error", "invalid_api_key", headers=[(b"www-authenticate", b"Bearer")])


class BodyLimit:
    """Reads the whole body before the app sees the request: 413 past ``max_bytes`` (by Content-Length
    at once, else while reading), 408 when it has not all arrived within ``timeout_s``. The app then
    gets the body replayed, so the concurrency gate behind this counts only requests whose body is in."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 10.0):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                return await send_error(send, 400, "invalid Content-Length", "invalid_request_error")
            if int(length) > self.max_bytes:
                return await self._too_large(send)
        chunked = _header(scope, b"transfer-encoding") is not None
        if not chunked and (length is None or int(length) == 0):
            return await self.app(scope, receive, send)  # no body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        chunks, size = [], 0
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                message = await asyncio.wait_for(receive(), timeout=remaining)
            except asyncio.TimeoutError:
                return await send_error(send, 408, f"the request body did not arrive within {self.timeout_s:g} s",
                                        "invalid_request_error", "request_timeout", headers=[(b"connection", b"close")])
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(send)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, send: Send) -> None:
        await send_error(send, 413, f"request body over the limit of {self.max_bytes} bytes",
                         "invalid_request_error", "request_too_large", headers=[(b"connection", b"close")])


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replay


class Gate:
    """The count of solving requests in flight, shared by ``ConcurrencyGate`` and ``/healthz``."""

    def __init__(self, limit: int, paths: frozenset[str]):
        self.limit = limit
        self.paths = paths
        self.in_flight = 0
        self.rejected = 0


class ConcurrencyGate:
    """Past ``gate.limit`` solving requests in flight, the next one gets a fast 503."""

    def __init__(self, app: ASGIApp, gate: Gate):
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self.gate
        if scope["type"] != "http" or scope["path"] not in gate.paths:
            return await self.app(scope, receive, send)
        if gate.in_flight >= gate.limit:
            gate.rejected += 1
            return await send_error(send, 503, f"server busy: {gate.limit} requests in flight; retry shortly",
                                    "server_busy", "concurrency_limit", headers=[(b"retry-after", b"1")])
        gate.in_flight += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            gate.in_flight -= 1
