"""``TraceStore``: the finished search traces a server keeps for ``GET /v1/traces/{id}``, bounded.

``put(trace)`` files a trace under a fresh random id and drops the oldest once ``capacity`` traces are
held (first in, first out; reading a trace does not refresh it). Traces are bounded themselves
(``reasonflow.trace.MAX_TRACE_NODES`` nodes, node text clipped), so memory is bounded by capacity
times that. Ids are 128-bit random hex, so one client cannot guess another's trace id.

Not guaranteed: persistence (traces live in memory and vanish with the process) or per-client access
control beyond the server's API key.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

from reasonflow.errors import ConfigError
from reasonflow.trace import Trace


class TraceStore:
    def __init__(self, capacity: int):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"trace retention must be a positive int, got {capacity!r}")
        self.capacity = capacity
        self._traces: OrderedDict[str, Trace] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._traces)

    def __contains__(self, trace_id: object) -> bool:
        return trace_id in self._traces

    def put(self, trace: Trace) -> str:
        """Keep ``trace`` (its listener detached) and return its id."""
        trace.listener = None
        trace_id = secrets.token_hex(16)
        with self._lock:
            self._traces[trace_id] = trace
            while len(self._traces) > self.capacity:
                self._traces.popitem(last=False)
        return trace_id

    def get(self, trace_id: str) -> Trace | None:
        with self._lock:
            return self._traces.get(trace_id)
