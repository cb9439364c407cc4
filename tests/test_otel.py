"""OpenTelemetry export of traces (reasonflow.trace.otel): a search becomes spans, checked with the SDK's
in-memory exporter. Skipped where the otel extra is not installed."""

from __future__ import annotations

import dspy
import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace as otel_api  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from reasonflow import StructuredAdapter  # noqa: E402
from reasonflow.errors import ConfigError, LMTimeoutError  # noqa: E402
from reasonflow.search import Task  # noqa: E402
from reasonflow.strategies import SelfConsistency, TreeOfThought  # noqa: E402
from reasonflow.testing import ScriptedLM  # noqa: E402
from reasonflow.trace import Trace, otel  # noqa: E402
from tests.test_strategies import tree_script  # noqa: E402

VALUES = {"a": 0.9, "b": 0.2, "c": 0.5, "aa": 0.1, "ab": 0.3, "ac": 0.2, "ca": 0.95, "cb": 0.0, "cc": 0.4}


@pytest.fixture()
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.enable(provider)
    try:
        yield exporter
    finally:
        otel.disable()
        provider.shutdown()


def run(program, lm, question="q"):
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        return program(question=question)


def tot_run():
    script, evaluator = tree_script(VALUES)
    tot = TreeOfThought(Task("t"), breadth=2, depth=2, proposals=3, evaluator=evaluator)
    return run(tot, ScriptedLM(script))


def test_off_by_default_no_spans_and_no_recorder(monkeypatch):
    monkeypatch.delenv(otel.ENV, raising=False)
    otel.disable()
    monkeypatch.setitem(otel._state, "env_checked", False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel_api.set_tracer_provider(provider)  # even with a global provider, nothing is exported unless enabled
    assert otel.recorder() is None
    tot_run()
    assert exporter.get_finished_spans() == ()


def test_a_search_becomes_one_span_per_node_and_per_lm_call_nested_as_the_tree(spans):
    pred = tot_run()
    graph = pred.trace.graph
    finished = spans.get_finished_spans()
    roots = [s for s in finished if s.name == "reasonflow.search"]
    nodes = [s for s in finished if s.name == "reasonflow.node"]
    calls = [s for s in finished if s.name.startswith("chat ")]
    assert len(roots) == 1 and len(nodes) == len(graph)
    root = roots[0]
    assert {s.context.trace_id for s in finished} == {root.context.trace_id}
    assert root.attributes["reasonflow.strategy"] == "tot" and root.attributes["reasonflow.answer"] == pred.answer
    assert root.attributes["reasonflow.nodes"] == len(graph)
    assert root.attributes["gen_ai.usage.output_tokens"] == pred.usage["completion_tokens"]

    span_of = {s.attributes["reasonflow.node.id"]: s for s in nodes}
    for nid, attrs in graph.nodes(data=True):
        span = span_of[nid]
        assert span.attributes["reasonflow.node.status"] == attrs["status"]
        assert span.attributes["reasonflow.node.depth"] == attrs["depth"]
        assert span.attributes.get("reasonflow.node.score") == attrs.get("score")
        parents = list(graph.predecessors(nid))
        expected_parent = span_of[parents[0]] if parents else root
        assert span.parent.span_id == expected_parent.context.span_id
        assert span.start_time <= span.end_time
        assert root.start_time <= span.start_time and span.end_time <= root.end_time
    assert {s.attributes["reasonflow.node.status"] for s in nodes} >= {"pruned", "answer"}

    records = {call for _, attrs in graph.nodes(data=True) for call in attrs["calls"]}
    assert {s.attributes["reasonflow.call.id"] for s in calls} == records
    assert len(calls) == pred.usage["calls"]
    for span in calls:
        assert span.kind == SpanKind.CLIENT and span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.request.model"] == "scripted"
        assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",) * span.attributes["reasonflow.call.n"]
        assert span.parent.span_id in {s.context.span_id for s in nodes}
    assert sum(s.attributes["gen_ai.usage.output_tokens"] for s in calls) == pred.usage["completion_tokens"]


def test_a_request_for_n_proposals_hangs_under_the_state_it_expanded(spans):
    pred = tot_run()
    graph = pred.trace.graph
    nodes = {s.attributes["reasonflow.node.id"]: s for s in spans.get_finished_spans() if s.name == "reasonflow.node"}
    for span in (s for s in spans.get_finished_spans() if s.name.startswith("chat ")):
        call = span.attributes["reasonflow.call.id"]
        listed = [nid for nid, attrs in graph.nodes(data=True) if call in attrs["calls"]]
        owner = next(nid for nid, s in nodes.items() if s.context.span_id == span.parent.span_id)
        if len(listed) > 1:
            assert {p for nid in listed for p in graph.predecessors(nid)} == {owner}
        else:
            assert listed == [owner]


def test_the_search_span_is_a_child_of_the_callers_span(spans):
    with otel._state["tracer"].start_as_current_span("user.request") as outer:
        run(SelfConsistency(Task("t"), k=3), ScriptedLM(lambda call: {"reasoning": "r", "answer": "7"}))
    root = next(s for s in spans.get_finished_spans() if s.name == "reasonflow.search")
    assert root.parent.span_id == outer.get_span_context().span_id


def test_a_failed_search_is_exported_with_an_error_status(spans):
    def script(call):
        raise LMTimeoutError("the engine stalled")

    with pytest.raises(LMTimeoutError):
        run(SelfConsistency(Task("t"), k=2), ScriptedLM(script))
    root = next(s for s in spans.get_finished_spans() if s.name == "reasonflow.search")
    assert root.status.status_code == StatusCode.ERROR and "LMTimeoutError" in root.status.description
    assert any(event.name == "exception" for event in root.events)


def test_a_saved_trace_exports_after_the_fact(spans, tmp_path):
    pred = tot_run()
    spans.clear()
    path = pred.trace.save(tmp_path / "t.json")
    otel.export_trace(Trace.load(path))
    finished = spans.get_finished_spans()
    assert len([s for s in finished if s.name == "reasonflow.node"]) == len(pred.trace.graph)
    assert not [s for s in finished if s.name.startswith("chat ")]  # a file keeps call ids, not call records


def test_env_switch_without_the_extra_is_a_typed_error(monkeypatch):
    monkeypatch.setenv(otel.ENV, "1")
    monkeypatch.setitem(otel._state, "env_checked", False)
    monkeypatch.setitem(otel._state, "tracer", None)
    real_import = __import__

    def no_otel(name, *args, **kwargs):
        if name.startswith("opentelemetry"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", no_otel)
    with pytest.raises(ConfigError, match=r"reasonflow\[otel\]"):
        otel.enabled()
    monkeypatch.undo()
    otel.disable()
