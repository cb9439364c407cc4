"""A scripted OpenAI-compatible HTTP server on loopback, for failure-path tests of the LM layer.

Each request pops the next behaviour from ``script`` (the last one repeats): a dict completion, a
callable(request body) returning one, "stall", "reset", or an (status, body, headers) error tuple.
Every reply waits ``delay_s`` first. Arrival times and bodies are logged. ``GET /metrics`` answers
Prometheus text: vLLM's prefix-cache counters, ``metrics_per_request`` hits and queries added per
chat request, and any samples a test puts in ``counters`` ({name: value}). ``GET /version`` answers
``{"version": server.version}`` as vLLM does. ``port`` binds a given port (default: a free one).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(*contents: str, finish_reason: str = "stop", prompt_tokens: int = 11, cached: int = 0) -> dict:
    return {
        "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": "fake",
        "choices": [{"index": i, "message": {"role": "assistant", "content": c},
                     "finish_reason": finish_reason if isinstance(finish_reason, str) else finish_reason[i]}
                    for i, c in enumerate(contents)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 7 * len(contents),
                  "total_tokens": prompt_tokens + 7 * len(contents),
                  "prompt_tokens_details": {"cached_tokens": cached}},
    }


class FakeServer:
    def __init__(self, script: list, stall_s: float = 5.0, delay_s: float = 0.0, models: list[dict] | None = None,
                 port: int = 0, metrics_per_request: tuple[int, int] = (3, 4)):
        self.script = list(script)
        self.models = models or [{"id": "fake", "object": "model"}]
        self.version = "0.0.fake"  # what GET /version reports
        self.stall_s = stall_s
        self.metrics_per_request = metrics_per_request
        self.delay_s = delay_s
        self.counters: dict[str, float] = {}  # extra /metrics samples a test keeps up to date
        self.arrivals: list[float] = []
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.rstrip("/") == "/version":  # vLLM's GET /version
                    self._send(200, {"version": server.version})
                    return
                if self.path.rstrip("/").endswith("/metrics"):
                    hits, queries = (len(server.arrivals) * k for k in server.metrics_per_request)
                    text = ("# TYPE vllm:prefix_cache_hits_total counter\n"
                            f"vllm:prefix_cache_hits_total{{engine=\"0\"}} {hits}\n"
                            f"vllm:prefix_cache_queries_total{{engine=\"0\"}} {queries}\n"
                            + "".join(f"{k}{{engine=\"0\"}} {v}\n" for k, v in list(server.counters.items()))
                            ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                    return
                self._send(200, {"object": "list", "data": server.models})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.arrivals.append(time.perf_counter())
                    server.bodies.append(body)
                    step = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                if server.delay_s:
                    time.sleep(server.delay_s)
                if callable(step):
                    step = step(body)
                if step == "stall":
                    time.sleep(server.stall_s)
                    return
                if step == "reset":
                    self.connection.shutdown(2)
                    self.connection.close()
                    return
                if isinstance(step, tuple):
                    status, payload, headers = (step + ({},))[:3]
                    return self._send(status, payload, headers)
                self._send(200, step)

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default backlog of 5 would serialise bursts of connections

        self.httpd = Server(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
