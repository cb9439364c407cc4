"""Search traces: what every strategy records, and how users read it back.

``Trace`` wraps a ``networkx.DiGraph`` (one node per thought, edges labelled with the action taken),
saves and loads it as node-link JSON, exports GraphML, prints a text summary and renders a
self-contained HTML viewer. Run ``Trace.load(path).summary()`` or ``trace.to_html(path)``.
``reasonflow.trace.otel`` (the ``otel`` extra, off by default) exports searches as OpenTelemetry spans.

It does not guarantee thread safety across OS threads, nor that a trace file from an untrusted source
is harmless beyond being validated and rendered as text (see ``reasonflow.trace.io``).
"""

from reasonflow.trace.graph import Trace
from reasonflow.trace.html import render_html, write_html
from reasonflow.trace.schema import (
    MAX_NODE_TEXT_CHARS, MAX_TRACE_FILE_BYTES, MAX_TRACE_NODES, NODE_STATUSES, TRACE_FORMAT, TRACE_VERSION,
)

__all__ = [
    "MAX_NODE_TEXT_CHARS",
    "MAX_TRACE_FILE_BYTES",
    "MAX_TRACE_NODES",
    "NODE_STATUSES",
    "TRACE_FORMAT",
    "TRACE_VERSION",
    "Trace",
    "render_html",
    "write_html",
]
