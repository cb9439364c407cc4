"""Trace stores: the finished search traces a server keeps for ``GET /v1/traces/{id}``, bounded.

Two stores with one interface (``put(trace) -> id``, ``get(id) -> Trace | None``, ``len``, ``in``):

- ``TraceStore(capacity)``: in this process's memory (the default).
- ``DirectoryTraceStore(directory, capacity)``: one JSON file per trace in a directory, so that several
  ``reasonflow serve`` processes given the same ``--trace-dir`` (behind a load balancer, on one host or
  a shared file system) answer ``GET /v1/traces/{id}`` for each other's runs. Each file is written
  atomically (a temporary file, then a rename), so a reader sees a whole trace or none; reads go
  through ``Trace.load`` (size bound, format and schema checks), and a file that fails them is logged
  and answered as missing.

``open_store(capacity, directory)`` picks one. ``put`` files a trace under a fresh random id and drops
the oldest once ``capacity`` traces are held (first in, first out; reading does not refresh; for a
directory the bound is the directory's, shared by every server writing to it, oldest by file
modification time). Traces are bounded themselves (``reasonflow.trace.MAX_TRACE_NODES`` nodes, node
text clipped), so memory or disk is bounded by capacity times that. Ids are 128-bit random hex, so
one client cannot guess another's trace id, and only such ids are ever turned into file names.

Not guaranteed: per-client access control beyond the server's API key; across processes the capacity
is kept after each put, so a burst of concurrent puts may briefly hold a few more files than
``capacity``. The directory store reads and writes files on the calling thread (a trace is small).
No Redis-like store is offered: none is built in without a real client to test it against.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

from reasonflow.errors import ArtifactError, ConfigError
from reasonflow.trace import Trace

log = logging.getLogger(__name__)

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")  # secrets.token_hex(16)
STALE_TEMP_S = 600.0  # a writer's temporary file older than this was left by a crash; it is removed


class Store(Protocol):
    """What the server needs of a trace store (``TraceStore``, ``DirectoryTraceStore``)."""

    capacity: int

    def put(self, trace: Trace) -> str: ...

    def get(self, trace_id: str) -> Trace | None: ...


def _check_capacity(capacity) -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ConfigError(f"trace retention must be a positive int, got {capacity!r}")
    return capacity


class TraceStore:
    """Traces in this process's memory."""

    def __init__(self, capacity: int):
        self.capacity = _check_capacity(capacity)
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


class DirectoryTraceStore:
    """Traces as ``<id>.json`` files in ``directory`` (created, owner-only, if missing), shared by
    every process that opens the same directory."""

    def __init__(self, directory: str | os.PathLike, capacity: int):
        self.capacity = _check_capacity(capacity)
        self.directory = Path(directory)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--trace-dir {self.directory}: cannot create it ({exc})") from exc
        if not self.directory.is_dir() or not os.access(self.directory, os.W_OK | os.X_OK):
            raise ConfigError(f"--trace-dir {self.directory} is not a writable directory")
        self._lock = threading.Lock()
        self._stamp = 0  # the last modification time given to a file, ns

    def _path(self, trace_id: object) -> Path | None:
        return self.directory / f"{trace_id}.json" if isinstance(trace_id, str) and TRACE_ID.match(trace_id) else None

    def _files(self) -> list[tuple[int, str, Path]]:
        """Every trace file as (modification time, name, path), oldest first; stale temp files removed."""
        found, now = [], time.time()
        with os.scandir(self.directory) as entries:
            for entry in entries:
                try:
                    if entry.name.endswith(".json") and TRACE_ID.match(entry.name[:-5]):
                        found.append((entry.stat().st_mtime_ns, entry.name, Path(entry.path)))
                    elif entry.name.endswith(".tmp") and now - entry.stat().st_mtime > STALE_TEMP_S:
                        os.unlink(entry.path)
                except FileNotFoundError:  # another server dropped it meanwhile
                    continue
        return sorted(found)

    def __len__(self) -> int:
        return len(self._files())

    def __contains__(self, trace_id: object) -> bool:
        path = self._path(trace_id)
        return path is not None and path.is_file()

    def put(self, trace: Trace) -> str:
        """Write ``trace`` (its listener detached) atomically, drop the oldest past capacity, return its id."""
        trace.listener = None
        trace_id = secrets.token_hex(16)
        path = self.directory / f"{trace_id}.json"
        try:
            trace.save(path)  # a temporary file, then os.replace
            with self._lock:  # the file's age to the nanosecond (file systems stamp mtime coarser)
                self._stamp = max(time.time_ns(), self._stamp + 1)
                os.utime(path, ns=(self._stamp, self._stamp))
        except OSError as exc:
            raise ArtifactError(f"cannot write the trace into {self.directory}: {exc}") from exc
        with self._lock:
            files = self._files()
            for _, _, path in files[: max(len(files) - self.capacity, 0)]:
                path.unlink(missing_ok=True)
        return trace_id

    def get(self, trace_id: str) -> Trace | None:
        path = self._path(trace_id)
        if path is None or not path.is_file():
            return None
        try:
            return Trace.load(path)
        except ArtifactError as exc:  # dropped meanwhile, or not a valid trace: answered as missing
            if path.is_file():
                log.warning("trace file %s is unreadable, answered as missing: %s", path, exc)
            return None


def open_store(capacity: int, directory: str | os.PathLike | None = None) -> Store:
    """The server's trace store: in memory, or in ``directory`` (``serve --trace-dir``) when given."""
    return TraceStore(capacity) if directory is None else DirectoryTraceStore(directory, capacity)
