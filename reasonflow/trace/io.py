"""Trace files: node-link JSON (the canonical, lossless format) and GraphML (for Gephi, yEd, Cytoscape).

Use ``Trace.save``/``Trace.load``/``Trace.to_graphml``/``Trace.from_graphml``; the functions here work on
bare ``networkx.DiGraph`` objects. JSON is ``nx.node_link_data(graph, edges="edges")`` plus a top-level
``"format": "reasonflow.trace"`` and ``"version": 1``. Writes are atomic (temp file, then rename).
GraphML cannot hold lists, dicts or None, so per attribute key, values that are not all one scalar type
are written as JSON text, and the graph attribute ``reasonflow_json_attrs`` lists those keys so the
reader can decode them.

It does not guarantee: that a file from an untrusted source is harmless to render (the HTML viewer
escapes text, but nothing sanitises it), or that GraphML written by other tools can be loaded: only
GraphML written here is read back. Files over MAX_TRACE_FILE_BYTES are refused before parsing, and
documents nested deeper than MAX_TRACE_NESTING (a node attribute that is a list of lists of ...) are
refused with ``ArtifactError`` before anything recurses over them.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError as XMLParseError

import networkx as nx

from reasonflow.errors import ArtifactError, ConfigError
from reasonflow.trace.schema import MAX_TRACE_FILE_BYTES, TRACE_FORMAT, TRACE_VERSION, check_graph

JSON_ATTRS_KEY = "reasonflow_json_attrs"
MAX_TRACE_NESTING = 64  # levels of lists and objects in a trace document, the document itself included


def check_nesting(doc: Any, limit: int = MAX_TRACE_NESTING) -> None:
    """``ArtifactError`` when ``doc`` nests lists and dicts deeper than ``limit`` (checked without recursion)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            raise ArtifactError(f"a trace nests lists and objects more than {limit} levels deep")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def graph_to_json(graph: nx.DiGraph) -> str:
    """Serialise a trace graph to node-link JSON text (strict JSON: no NaN or Infinity)."""
    doc = {"format": TRACE_FORMAT, "version": TRACE_VERSION, **nx.node_link_data(graph, edges="edges")}
    try:
        return json.dumps(doc, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"trace holds a value that is not JSON-serializable: {exc}") from exc


def graph_to_dict(graph: nx.DiGraph) -> dict[str, Any]:
    """The node-link document as plain dicts and lists, sharing nothing with the live graph."""
    return json.loads(graph_to_json(graph))


def graph_from_dict(doc: Any) -> nx.DiGraph:
    """Validate a node-link document and build its graph; raise ArtifactError on anything malformed."""
    if not isinstance(doc, dict):
        raise ArtifactError(f"a trace must be a JSON object, got {type(doc).__name__}")
    check_nesting(doc)
    if doc.get("format") != TRACE_FORMAT:
        raise ArtifactError(f"not a reasonflow trace: format is {doc.get('format')!r}, expected {TRACE_FORMAT!r}")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ArtifactError(f"trace version must be an integer, got {version!r}")
    if version > TRACE_VERSION:
        raise ArtifactError(f"trace version {version} was written by a newer reasonflow (this one reads "
                            f"version {TRACE_VERSION}); upgrade reasonflow to read it")
    if version != TRACE_VERSION:
        raise ArtifactError(f"unknown trace version {version}; this reasonflow reads version {TRACE_VERSION}")
    nodes, edges, attrs = doc.get("nodes"), doc.get("edges"), doc.get("graph")
    if not (isinstance(nodes, list) and isinstance(edges, list) and isinstance(attrs, dict)):
        raise ArtifactError("a trace needs a 'nodes' list, an 'edges' list and a 'graph' object")
    if doc.get("directed") is not True or doc.get("multigraph") is not False:
        raise ArtifactError("a trace must be a directed graph without parallel edges")
    if not all(isinstance(n, dict) and isinstance(n.get("id"), str) for n in nodes):
        raise ArtifactError("every trace node must be an object with a string 'id'")
    ids = [n["id"] for n in nodes]
    if len(set(ids)) != len(ids):
        raise ArtifactError("trace node ids are not unique")
    known = set(ids)
    for e in edges:
        if not isinstance(e, dict) or e.get("source") not in known or e.get("target") not in known:
            raise ArtifactError(f"trace edge {e!r} does not join two nodes of the trace")
    if attrs.get("version") != version:
        raise ArtifactError(f"trace graph version {attrs.get('version')!r} differs from file version {version}")
    try:
        graph = nx.node_link_graph(copy.deepcopy(doc), directed=True, multigraph=False, edges="edges")
        _restore_ids(graph)
        check_graph(graph)
    except RecursionError as exc:
        raise ArtifactError("the trace nests too deeply to be read") from exc
    except (TypeError, ValueError, KeyError, nx.NetworkXError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"the trace is malformed: {exc}") from exc
    return graph


def _restore_ids(graph: nx.DiGraph) -> None:
    """node_link_graph drops the 'id' attribute (it is the node key); put it back, first."""
    for nid in graph:
        attrs = {k: v for k, v in graph.nodes[nid].items() if k != "id"}
        graph.nodes[nid].clear()
        graph.nodes[nid].update({"id": nid, **attrs})


def _read_bounded(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_TRACE_FILE_BYTES:
            raise ArtifactError(f"{path} is {size} bytes, over MAX_TRACE_FILE_BYTES={MAX_TRACE_FILE_BYTES}")
        return path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read trace file {path}: {exc}") from exc


def _write_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(graph: nx.DiGraph, path: str | os.PathLike) -> Path:
    """Write the node-link JSON of ``graph`` to ``path`` atomically; return the path."""
    return _write_atomic(Path(path), graph_to_json(graph))


def read_json(path: str | os.PathLike) -> nx.DiGraph:
    """Read and validate a trace JSON file; ArtifactError if truncated, garbage or of another format."""
    path = Path(path)
    try:
        doc = json.loads(_read_bounded(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON (truncated or corrupted?): {exc}") from exc
    except RecursionError as exc:
        raise ArtifactError(f"{path} nests JSON too deeply to be a trace") from exc
    try:
        return graph_from_dict(doc)
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: {exc}") from exc


# --- GraphML ------------------------------------------------------------------------------------

def _encode_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Give every key one GraphML type, in place: mixed ints/floats become floats, and any key holding
    None, a list, a dict or mixed types becomes JSON text. Return the keys stored as JSON."""
    encoded = []
    for key in sorted({k for row in rows for k in row}):
        kinds = {type(row[key]) for row in rows if key in row}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            continue
        if kinds == {int, float}:
            for row in rows:
                if key in row:
                    row[key] = float(row[key])
            continue
        for row in rows:
            if key in row:
                row[key] = json.dumps(row[key], ensure_ascii=False, allow_nan=False)
        encoded.append(key)
    return encoded


def write_graphml(graph: nx.DiGraph, path: str | os.PathLike) -> Path:
    """Write ``graph`` as GraphML that ``nx.read_graphml`` (and ``read_graphml`` here) parse back."""
    graph_attrs = dict(graph.graph)
    nodes = [dict(attrs) for _, attrs in graph.nodes(data=True)]
    edges = [dict(attrs) for _, _, attrs in graph.edges(data=True)]
    meta = {"graph": _encode_rows([graph_attrs]), "node": _encode_rows(nodes), "edge": _encode_rows(edges)}
    out = nx.DiGraph()
    out.graph.update(graph_attrs, format=TRACE_FORMAT, **{JSON_ATTRS_KEY: json.dumps(meta)})
    out.add_nodes_from(zip(graph.nodes, nodes))
    out.add_edges_from((u, v, attrs) for (u, v), attrs in zip(graph.edges, edges))
    path = Path(path)
    lines = nx.generate_graphml(out, encoding="utf-8", prettyprint=True)
    return _write_atomic(path, "\n".join(lines) + "\n")


def _decode(attrs: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    return {k: json.loads(v) if k in keys else v for k, v in attrs.items()}


def read_graphml(path: str | os.PathLike) -> nx.DiGraph:
    """Read GraphML written by ``write_graphml`` back into a validated trace graph."""
    path = Path(path)
    data = _read_bounded(path)
    try:
        raw = nx.parse_graphml(data, node_type=str)
        if raw.graph.pop("format", None) != TRACE_FORMAT:
            raise ArtifactError(f"{path} is GraphML but not a reasonflow trace (no format={TRACE_FORMAT!r})")
        for key in ("node_default", "edge_default"):  # added by networkx's reader
            raw.graph.pop(key, None)
        meta = json.loads(raw.graph.pop(JSON_ATTRS_KEY, '{"graph": [], "node": [], "edge": []}'))
        check_nesting(meta)
        graph = nx.DiGraph()
        graph.graph.update(_decode(raw.graph, meta["graph"]))
        for nid, attrs in raw.nodes(data=True):
            graph.add_node(nid, **{"id": nid, **_decode(attrs, meta["node"])})
        for u, v, attrs in raw.edges(data=True):
            graph.add_edge(u, v, **_decode(attrs, meta["edge"]))
    except ArtifactError:
        raise
    except RecursionError as exc:
        raise ArtifactError(f"{path} nests too deeply to be a trace") from exc
    except (XMLParseError, nx.NetworkXError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{path} is not a readable reasonflow GraphML trace: {exc}") from exc
    if not raw.is_directed():
        raise ArtifactError(f"{path}: a trace must be a directed graph")
    try:
        for attrs in [graph.graph, *(a for _, a in graph.nodes(data=True)), *(a for _, _, a in graph.edges(data=True))]:
            check_nesting(attrs)
        check_graph(graph)
    except RecursionError as exc:
        raise ArtifactError(f"{path} nests too deeply to be a trace") from exc
    return graph
