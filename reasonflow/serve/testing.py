"""Run a server app on loopback in a background thread, for tests and benchmarks.

    with serving(create_app(["gsm8k.cot"], lm=ScriptedLM(script))) as url:
        httpx.post(f"{url}/v1/solve", json={"question": "..."})

It is real uvicorn on a free 127.0.0.1 port (real HTTP, real disconnects), in a daemon thread with its
own event loop. Leaving the block asks uvicorn to shut down gracefully and waits for the thread.

Not guaranteed: signal handling (uvicorn installs none off the main thread; send SIGTERM to a
subprocess to test that), or isolation from the calling process's memory and CPU.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from reasonflow.errors import ConfigError

START_TIMEOUT_S = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def serving(app, host: str = "127.0.0.1", port: int | None = None, shutdown_grace_s: float = 10.0,
            log_level: str = "warning") -> Iterator[str]:
    """Serve ``app``; yield its root URL (``http://127.0.0.1:PORT``)."""
    import uvicorn

    port = port or free_port(host)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off",
                            timeout_graceful_shutdown=shutdown_grace_s)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"reasonflow-serve-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError(f"the test server on {host}:{port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=shutdown_grace_s + 5)
