"""The shape of a search trace: statuses, attribute names, bounds, and the checks both the builder and
the loaders apply.

Use it through ``reasonflow.trace.Trace``; nothing here needs to be called directly. ``check_node_attrs``
validates values a strategy passes in (raising ``ConfigError``), and ``check_graph`` validates a graph
read from disk (raising ``ArtifactError``). It does not guarantee that a graph is a sensible search,
only that it is a well-formed forest whose nodes carry the documented attributes with the right types.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import networkx as nx

from reasonflow.errors import ArtifactError, ConfigError

TRACE_FORMAT = "reasonflow.trace"
TRACE_VERSION = 1

NODE_STATUSES = ("proposed", "expanded", "pruned", "selected", "terminal", "answer")
"""Lifecycle of a node: proposed by the LM, expanded (has children), pruned by the evaluator,
selected into the beam/frontier, terminal (no further expansion), answer (carries a final answer)."""

MAX_TRACE_NODES = 10_000  # hard cap per trace; strategies stop far earlier (config.DEFAULT_MAX_NODES)
MAX_NODE_TEXT_CHARS = 20_000  # longer node text is cut, with a marker saying how much was dropped
MAX_TRACE_FILE_BYTES = 256 * 1024 * 1024  # loaders refuse bigger files before parsing them

NODE_ATTRS = (
    "id", "depth", "text", "score", "status", "calls",
    "prompt_tokens", "completion_tokens", "latency_s", "answer",
)
GRAPH_ATTRS = (
    "program", "strategy", "config", "question", "answer",
    "usage", "budget_exhausted", "answer_node", "version",
)
RESERVED_ATTRS = ("id", "depth", "parent", "action", "type")  # fixed by add_node, or event keys


def clip_text(text: str) -> str:
    """Bound a node's text to MAX_NODE_TEXT_CHARS, saying how much was dropped."""
    if len(text) <= MAX_NODE_TEXT_CHARS:
        return text
    dropped = len(text) - MAX_NODE_TEXT_CHARS
    return text[:MAX_NODE_TEXT_CHARS] + f"\n… [{dropped} characters cut by reasonflow.trace]"


def json_safe(name: str, value: Any, error: type[Exception]) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise error(f"trace attribute {name!r} must be JSON-serializable with finite numbers: {exc}") from exc


def check_node_attrs(attrs: Mapping[str, Any], error: type[Exception] = ConfigError) -> None:
    """Check the documented node attributes present in ``attrs``; extra keys need only be JSON-safe."""
    for name, value in attrs.items():
        if name == "status":
            if value not in NODE_STATUSES:
                raise error(f"node status must be one of {NODE_STATUSES}, got {value!r}")
        elif name in ("text", "id"):
            if not isinstance(value, str):
                raise error(f"node {name} must be a string, got {type(value).__name__}")
        elif name in ("depth", "prompt_tokens", "completion_tokens"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise error(f"node {name} must be an int >= 0, got {value!r}")
        elif name in ("score", "latency_s"):
            ok_none = name == "score" and value is None
            if not ok_none and (isinstance(value, bool) or not isinstance(value, (int, float))
                                or not math.isfinite(value)):
                raise error(f"node {name} must be a finite number{' or None' if name == 'score' else ''}, "
                            f"got {value!r}")
            if name == "latency_s" and value < 0:
                raise error(f"node latency_s must be >= 0, got {value!r}")
        elif name == "calls":
            if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                raise error(f"node calls must be a list of call-id strings, got {value!r}")
        else:
            json_safe(name, value, error)


def check_graph(graph: nx.DiGraph) -> None:
    """Raise ArtifactError unless ``graph`` is a bounded forest of well-formed trace nodes."""
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise ArtifactError("a trace must be a directed graph without parallel edges")
    if graph.number_of_nodes() > MAX_TRACE_NODES:
        raise ArtifactError(f"trace has {graph.number_of_nodes()} nodes, over MAX_TRACE_NODES={MAX_TRACE_NODES}")
    missing = [a for a in GRAPH_ATTRS if a not in graph.graph]
    if missing:
        raise ArtifactError(f"trace is missing graph attributes {missing}")
    types = {"program": str, "strategy": str, "question": str, "config": dict, "usage": dict,
             "budget_exhausted": bool, "version": int}
    for name, kind in types.items():
        if not isinstance(graph.graph[name], kind):
            raise ArtifactError(f"trace graph attribute {name!r} must be {kind.__name__}, "
                                f"got {type(graph.graph[name]).__name__}")
    for nid, attrs in graph.nodes(data=True):
        if not isinstance(nid, str):
            raise ArtifactError(f"trace node ids must be strings, got {nid!r}")
        absent = [a for a in NODE_ATTRS if a != "id" and a not in attrs]
        if absent:
            raise ArtifactError(f"trace node {nid!r} is missing attributes {absent}")
        check_node_attrs({k: v for k, v in attrs.items() if k != "id"}, error=ArtifactError)
    for nid, attrs in graph.nodes(data=True):
        parents = list(graph.predecessors(nid))
        if len(parents) > 1:
            raise ArtifactError(f"trace node {nid!r} has {len(parents)} parents; a trace is a tree")
        want = graph.nodes[parents[0]]["depth"] + 1 if parents else 0
        if attrs["depth"] != want:
            raise ArtifactError(f"trace node {nid!r} has depth {attrs['depth']}, its parent implies {want}")
    for u, v, attrs in graph.edges(data=True):
        if not isinstance(attrs.get("action", ""), (str, type(None))) or "action" not in attrs:
            raise ArtifactError(f"trace edge {u!r}->{v!r} needs an 'action' that is a string or null")
    if not nx.is_directed_acyclic_graph(graph):
        raise ArtifactError("trace graph has a cycle; a trace is a tree")
    answer_node = graph.graph["answer_node"]
    if answer_node is not None and answer_node not in graph:
        raise ArtifactError(f"trace answer_node {answer_node!r} is not a node of the trace")
