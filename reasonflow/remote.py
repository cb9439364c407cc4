"""``reasonflow.remote(base_url, program, api_key=...)``: a program served by ``reasonflow serve``, as a
``dspy.Module`` to use inside your own DSPy programs.

    solve = reasonflow.remote("http://gpu-host:8100", "gsm8k.sc@8", api_key=KEY, k=4)
    pred = solve(question="...")                 # or: await solve.acall(question="...")
    pred.answer, pred.reasoning, pred.usage, pred.trace_id, pred.budget_exhausted, pred.error

Each call is one ``POST {base_url}/v1/solve`` with ``{program, question, options}``; the options are the
program's (``k``, ``temperature``, ``budget``, ...: the keyword arguments given here, overridden by a
call's ``options={...}``), checked by the server. Why not ``dspy.LM`` pointed at the server's ``/v1``:
the chat route answers with the bare answer, and DSPy's adapters look for their field markers or JSON
in it, find none and return an empty prediction. This module speaks reasonflow's own route instead, so
the reasoning, the usage and the trace id come back as fields.

A solve without an answer is a ``Prediction`` with ``answer=None`` and ``error`` saying why (as
``/v1/solve`` answers it), not an exception. Failures to get a solve at all are typed
(``reasonflow.errors``): the server unreachable, too slow, busy (503) or failing upstream (5xx) is
``LMTimeoutError``; a refused request (401, 404, 413, 422) is ``LMRequestError`` with the status and the
server's message; a 200 that is not a solve is ``UpstreamResponseError``.

Not guaranteed: retries (a solve is expensive; retry yourself when a 503 says the server is full),
TLS verification beyond httpx's defaults, or that the served program is the same across calls (the
server may be restarted with another).
"""

from __future__ import annotations

from typing import Any

import dspy
import httpx

from reasonflow.errors import ConfigError, LMRequestError, LMTimeoutError, UpstreamResponseError
from reasonflow.serve.config import DEFAULT_REQUEST_DEADLINE_S

DEFAULT_REMOTE_TIMEOUT_S = DEFAULT_REQUEST_DEADLINE_S + 30.0  # the server's default deadline, plus transfer
FIELDS = ("answer", "reasoning", "usage", "trace_id", "budget_exhausted", "program")


class RemoteProgram(dspy.Module):
    """A served program as a module: ``forward(question)`` -> ``dspy.Prediction``."""

    def __init__(self, base_url: str, program: str | None = None, *, api_key: str | None = None,
                 timeout_s: float = DEFAULT_REMOTE_TIMEOUT_S, **options: Any):
        super().__init__()
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an http(s) URL of a reasonflow server, got {base_url!r}")
        if not timeout_s or timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s!r}")
        root = base_url.rstrip("/")
        self.base_url = root[: -len("/v1")] if root.endswith("/v1") else root
        self.program, self.options, self.timeout_s = program, dict(options), float(timeout_s)
        self._api_key = api_key

    def _request(self, question: str, options: dict | None) -> tuple[str, dict, dict]:
        if not isinstance(question, str):
            raise ConfigError(f"question must be a string, got {type(question).__name__}")
        body: dict[str, Any] = {"question": question, "options": {**self.options, **(options or {})}}
        if self.program is not None:
            body["program"] = self.program
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        return f"{self.base_url}/v1/solve", body, headers

    def forward(self, question: str, options: dict | None = None) -> dspy.Prediction:
        url, body, headers = self._request(question, options)
        try:
            with httpx.Client(timeout=self.timeout_s) as client:
                response = client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return self._prediction(response)

    async def aforward(self, question: str, options: dict | None = None) -> dspy.Prediction:
        url, body, headers = self._request(question, options)
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return self._prediction(response)

    def _unreachable(self, exc: httpx.HTTPError) -> LMTimeoutError:
        if isinstance(exc, httpx.TimeoutException):
            return LMTimeoutError(f"{self.base_url} did not answer within {self.timeout_s:g} s: {exc!r}")
        return LMTimeoutError(f"could not reach the reasonflow server at {self.base_url}: {exc!r}")

    def _prediction(self, response: httpx.Response) -> dspy.Prediction:
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code != 200:
            error = data.get("error") if isinstance(data, dict) else None
            message = error.get("message") if isinstance(error, dict) else response.text[:500]
            where = f"{self.base_url} answered {response.status_code}"
            if response.status_code in (408, 429) or response.status_code >= 500:
                raise LMTimeoutError(f"{where}: {message}")
            raise LMRequestError(f"{where}: {message}", status_code=response.status_code)
        if not isinstance(data, dict) or "answer" not in data or "trace_id" not in data:
            raise UpstreamResponseError(f"{self.base_url}/v1/solve answered 200 with a body that is not a solve: "
                                        f"{response.text[:200]!r}")
        return dspy.Prediction(**{name: data.get(name) for name in FIELDS}, error=data.get("error"))


def remote(base_url: str, program: str | None = None, *, api_key: str | None = None,
           timeout_s: float = DEFAULT_REMOTE_TIMEOUT_S, **options: Any) -> RemoteProgram:
    """A ``dspy.Module`` running ``program`` (default: the server's first) on the reasonflow server at
    ``base_url`` (``http://host:8100``, with or without ``/v1``). ``options`` are the program's options,
    sent with every call."""
    return RemoteProgram(base_url, program, api_key=api_key, timeout_s=timeout_s, **options)
