"""OpenTelemetry export of search traces: one span per search, per node and per LM call. Off by default.

    pip install 'reasonflow[otel]'
    from reasonflow.trace import otel
    otel.enable()                      # the global TracerProvider (or enable(provider))
    program(question="...")            # -> spans: reasonflow.search > reasonflow.node > chat <model>

or set ``REASONFLOW_OTEL=1`` (for example under ``opentelemetry-instrument``, which configures the
global provider and its exporter from the standard ``OTEL_*`` variables). Any OTel collector takes the
spans, and the UIs that read OTel (MLflow, Phoenix, Jaeger) show them.

The spans, each with explicit start and end times:

- ``reasonflow.search`` (the search; a child of whatever span is current when the program is called,
  so a served request or a user's own span holds it): program, strategy, question, answer,
  ``budget_exhausted``/``exhausted_by``, node count, LM calls and token totals.
- ``reasonflow.node``, one per trace node, nested as the tree is (a child under its parent's span):
  id, depth, status (proposed/pruned/answer...), score, text, answer, the action on its edge and its
  tokens. It spans from the node's creation to its last update, widened to cover its LM calls.
- ``chat <model>``, one per LM call (kind CLIENT, OpenTelemetry's GenAI conventions:
  ``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``/``output_tokens``,
  ``gen_ai.response.finish_reasons``), under the node whose ``calls`` name it (else under the search);
  its status is ERROR when the call failed. A call that several sibling nodes list (one request for n
  proposals) goes under their parent.

``export_trace(trace)`` exports a finished or saved trace after the fact (no timings: its spans are
instants at export time). Not guaranteed: calls beyond a search's usage-record cap
(``DEFAULT_HISTORY_LIMIT``) get no span; text attributes are cut at ``MAX_ATTRIBUTE_CHARS``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable

from reasonflow.errors import ConfigError
from reasonflow.usage import CallRecord, Usage, track_usage

ENV = "REASONFLOW_OTEL"
MAX_ATTRIBUTE_CHARS = 2000  # a node's text, the question, an answer
TRACER_NAME = "reasonflow"

_state: dict[str, Any] = {"tracer": None, "env_checked": False}
_lock = threading.Lock()


def _api():
    try:
        from opentelemetry import context, trace
    except ImportError as exc:
        raise ConfigError("OpenTelemetry export needs the otel extra: pip install 'reasonflow[otel]'") from exc
    return trace, context


def enable(tracer_provider=None) -> None:
    """Export every search from now on, to ``tracer_provider`` (default: OpenTelemetry's global one)."""
    trace, _ = _api()
    import reasonflow

    with _lock:
        _state["tracer"] = trace.get_tracer(TRACER_NAME, reasonflow.__version__, tracer_provider=tracer_provider)
        _state["env_checked"] = True


def disable() -> None:
    with _lock:
        _state["tracer"] = None
        _state["env_checked"] = True


def enabled() -> bool:
    """Whether searches are exported (``enable()`` was called, or ``REASONFLOW_OTEL=1`` at first use)."""
    if not _state["env_checked"]:
        if os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on"):
            enable()  # ConfigError without the otel extra, on every search until it is installed
        else:
            _state["env_checked"] = True
    return _state["tracer"] is not None


class _TimedUsage(Usage):
    """A usage collector that also notes when each call finished (the records carry their latency)."""

    def __init__(self):
        super().__init__()
        self.ended_ns: dict[str, int] = {}

    def add(self, rec: CallRecord) -> None:
        self.ended_ns[rec.id] = time.time_ns()
        super().add(rec)


class Recorder:
    """One search's recording: node event times and LM call end times, then ``export``."""

    def __init__(self, tracer=None):
        self.tracer = tracer or _state["tracer"]
        _, context = _api()
        self.parent = context.get_current()  # the span current when the program was called
        self.start_ns = time.time_ns()
        self.node_ns: dict[str, list[int]] = {}  # id -> [created, last updated]
        self.usage = _TimedUsage()

    def listen(self, downstream=None):
        """A trace listener that notes node times, then passes each event on to ``downstream``."""

        def listener(event: dict) -> None:
            now = time.time_ns()
            if event.get("type") == "node":
                self.node_ns[event["node"]["id"]] = [now, now]
            elif event.get("type") == "update" and event.get("id") in self.node_ns:
                self.node_ns[event["id"]][1] = now
            if downstream is not None:
                downstream(event)

        return listener

    @contextmanager
    def calls(self):
        """Collect the LM calls made inside (with their end times)."""
        with track_usage(usage=self.usage):
            yield

    def export(self, trace, error: BaseException | None = None) -> None:
        export_trace(trace, tracer=self.tracer, records=self.usage.records, call_end_ns=self.usage.ended_ns,
                     node_ns=self.node_ns, start_ns=self.start_ns, end_ns=time.time_ns(), parent=self.parent,
                     error=error)


def recorder() -> Recorder | None:
    """A ``Recorder`` for one search when export is enabled, else None (the default: nothing is done)."""
    return Recorder() if enabled() else None


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_ATTRIBUTE_CHARS else text[:MAX_ATTRIBUTE_CHARS] + "…"


def _attrs(pairs: dict) -> dict:
    """OTel attributes: None dropped, scalars kept, anything else as (cut) JSON text."""
    out = {}
    for key, value in pairs.items():
        if value is None:
            continue
        if isinstance(value, (bool, int, float)):
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            out[key] = [_text(v) for v in value]
        else:
            out[key] = _text(value)
    return out


def export_trace(trace, *, tracer=None, records: Iterable[CallRecord] = (), call_end_ns: dict | None = None,
                 node_ns: dict | None = None, start_ns: int | None = None, end_ns: int | None = None,
                 parent=None, error: BaseException | None = None):
    """Emit ``trace`` as spans (see the module docstring); returns the search span."""
    otel_trace, _ = _api()
    from opentelemetry.trace import Status, StatusCode

    import networkx as nx

    tracer = tracer or _state["tracer"] or otel_trace.get_tracer(TRACER_NAME)
    now = time.time_ns()
    end_ns = end_ns or now
    start_ns = min(start_ns or end_ns, end_ns)
    call_end_ns, node_ns = call_end_ns or {}, node_ns or {}
    records = list(records)
    g, graph = trace.graph.graph, trace.graph
    usage = g.get("usage") or {}

    def window(rec: CallRecord) -> tuple[int, int]:
        end = min(max(call_end_ns.get(rec.id, end_ns), start_ns), end_ns)
        return max(start_ns, end - int(rec.latency_s * 1e9)), end

    root = tracer.start_span("reasonflow.search", context=parent, start_time=start_ns, attributes=_attrs({
        "reasonflow.program": g.get("program"), "reasonflow.strategy": g.get("strategy"),
        "reasonflow.question": g.get("question"), "reasonflow.answer": g.get("answer"),
        "reasonflow.budget_exhausted": g.get("budget_exhausted"), "reasonflow.exhausted_by": g.get("exhausted_by"),
        "reasonflow.answer_node": g.get("answer_node"), "reasonflow.nodes": len(graph),
        "reasonflow.lm_calls": usage.get("calls"), "reasonflow.config": g.get("config"),
        "gen_ai.usage.input_tokens": usage.get("prompt_tokens"),
        "gen_ai.usage.output_tokens": usage.get("completion_tokens")}))
    root_context = otel_trace.set_span_in_context(root)
    owner = _owners(graph)
    by_node: dict[str, list[CallRecord]] = {}
    for rec in records:
        by_node.setdefault(owner.get(rec.id), []).append(rec)

    contexts = {}
    for nid in nx.topological_sort(graph):
        parents = list(graph.predecessors(nid))
        created, updated = node_ns.get(nid, (end_ns, end_ns))
        windows = [window(rec) for rec in by_node.get(nid, [])]
        begin = min([created, *(w[0] for w in windows)])
        finish = max([updated, *(w[1] for w in windows)])
        span = tracer.start_span("reasonflow.node", context=contexts[parents[0]] if parents else root_context,
                                 start_time=begin, attributes=_node_attrs(graph, nid, parents))
        contexts[nid] = otel_trace.set_span_in_context(span)
        _call_spans(tracer, by_node.get(nid, []), contexts[nid], window)
        span.end(end_time=max(finish, begin))
    _call_spans(tracer, by_node.get(None, []), root_context, window)
    if error is not None:
        root.record_exception(error)
        root.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    root.end(end_time=end_ns)
    return root


def _node_attrs(graph, nid: str, parents: list[str]) -> dict:
    attrs = graph.nodes[nid]
    return _attrs({
        "reasonflow.node.id": nid, "reasonflow.node.depth": attrs.get("depth"),
        "reasonflow.node.status": attrs.get("status"), "reasonflow.node.score": attrs.get("score"),
        "reasonflow.node.text": attrs.get("text"), "reasonflow.node.answer": attrs.get("answer"),
        "reasonflow.node.action": graph.edges[parents[0], nid].get("action") if parents else None,
        "reasonflow.node.parent": parents[0] if parents else None,
        "reasonflow.node.calls": len(attrs.get("calls") or []), "reasonflow.node.latency_s": attrs.get("latency_s"),
        "gen_ai.usage.input_tokens": attrs.get("prompt_tokens"),
        "gen_ai.usage.output_tokens": attrs.get("completion_tokens")})


def _owners(graph) -> dict[str, str]:
    """Call id -> the node its span goes under: the node that lists it, or, for a call listed by several
    sibling nodes (one request for n proposals), their parent; else the first that lists it."""
    listed: dict[str, list[str]] = {}
    for nid, attrs in graph.nodes(data=True):
        for call in attrs.get("calls") or []:
            listed.setdefault(call, []).append(nid)
    owner = {}
    for call, nodes in listed.items():
        parents = {p for nid in nodes for p in graph.predecessors(nid)}
        owner[call] = nodes[0] if len(nodes) == 1 or len(parents) != 1 else parents.pop()
    return owner


def _call_spans(tracer, records, context, window) -> None:
    from opentelemetry.trace import SpanKind, Status, StatusCode

    for rec in records:
        begin, end = window(rec)
        span = tracer.start_span(f"chat {rec.model}", context=context, kind=SpanKind.CLIENT, start_time=begin,
                                 attributes=_attrs({
            "gen_ai.operation.name": "chat", "gen_ai.request.model": rec.model,
            "gen_ai.usage.input_tokens": rec.prompt_tokens, "gen_ai.usage.output_tokens": rec.completion_tokens,
            "gen_ai.response.finish_reasons": list(rec.finish_reasons), "reasonflow.call.id": rec.id,
            "reasonflow.call.n": rec.n, "reasonflow.call.cached_tokens": rec.cached_tokens,
            "reasonflow.call.truncated": rec.truncated, "reasonflow.call.parse_failures": rec.parse_failures,
            "reasonflow.call.latency_s": rec.latency_s, "reasonflow.call.replica": rec.replica,
            "reasonflow.call.error": rec.error}))
        if rec.error:
            span.set_status(Status(StatusCode.ERROR, rec.error))
        span.end(end_time=end)
