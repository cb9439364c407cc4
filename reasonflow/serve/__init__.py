"""``reasonflow.serve``: programs over HTTP. A FastAPI app with a REST API, OpenAI-compatible routes and
server-sent search events, run under uvicorn by ``reasonflow serve``.

    reasonflow serve gsm8k.cot gsm8k.sc@8 --base-url http://127.0.0.1:8000/v1 --api-key KEY   # on port 8100

    from reasonflow.serve import create_app
    app = create_app(["gsm8k.sc@8"], base_url="http://127.0.0.1:8000/v1")

Layout: ``app`` (factory, REST routes), ``openai_routes``, ``events`` (SSE), ``runner`` (per-request
program, ``dspy.context``, disconnect cancellation), ``programs`` (what is served), ``schemas``
(request models), ``middleware`` (auth, body limit, concurrency), ``metrics`` (Prometheus),
``store`` (bounded traces), ``config`` (limits), ``cli``. Needs the ``serve`` extra (fastapi, uvicorn,
prometheus_client); importing this package and ``reasonflow.serve.cli`` does not, so the CLI loads
without it.

Not guaranteed: TLS, rate limiting or multi-tenant isolation; see each module's docstring.
"""

from reasonflow.serve.config import ServeLimits

__all__ = ["ServeLimits", "TraceStore", "create_app"]


def __getattr__(name: str):
    # FastAPI is imported on first use, so `reasonflow.serve.cli` (and `reasonflow --help`) load without it.
    if name == "create_app":
        from reasonflow.serve.app import create_app

        return create_app
    if name == "TraceStore":
        from reasonflow.serve.store import TraceStore

        return TraceStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
