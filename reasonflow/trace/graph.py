"""``Trace``: the record of one search, a ``networkx.DiGraph`` of thoughts that a strategy grows as it runs.

How to use: a strategy creates ``Trace(program=..., strategy=..., config=..., question=...)``, calls
``add_node`` and ``update`` as it proposes, scores, prunes and selects, and ``finish`` at the end. Users
``save``/``load`` it, print ``summary()`` (the CLI's ``reasonflow trace``), or open ``to_html(path)``.
An optional ``listener`` sees every change as a small dict, synchronously (the server turns these into
server-sent events); an exception in the listener propagates to the strategy.

What it does not guarantee: safety across OS threads (ids stay unique across asyncio tasks in one
thread, which is how strategies run); that the token sums in ``stats()`` equal the endpoint's usage when
a strategy records one call's usage on several nodes (``finish(usage=...)`` keeps the endpoint's own
count); node text beyond MAX_NODE_TEXT_CHARS (it is cut, with a marker).
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import networkx as nx

from reasonflow.errors import ConfigError
from reasonflow.trace import io
from reasonflow.trace.schema import (
    MAX_TRACE_NODES, RESERVED_ATTRS, TRACE_VERSION, check_node_attrs, clip_text, json_safe,
)

Listener = Callable[[dict], None]


class Trace:
    """A search tree: node attributes ``id, depth, text, score, status, calls, prompt_tokens,
    completion_tokens, latency_s, answer`` (plus any extras), edge attribute ``action``, and graph
    attributes ``program, strategy, config, question, answer, usage, budget_exhausted, answer_node,
    version``. ``max_nodes`` (at most MAX_TRACE_NODES) bounds ``add_node``."""

    def __init__(self, program: str, strategy: str, config: Mapping[str, Any] | None = None,
                 question: str = "", listener: Listener | None = None, max_nodes: int = MAX_TRACE_NODES):
        if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or not 1 <= max_nodes <= MAX_TRACE_NODES:
            raise ConfigError(f"max_nodes must be an int in 1..{MAX_TRACE_NODES} (MAX_TRACE_NODES), got {max_nodes!r}")
        for name, value in (("program", program), ("strategy", strategy), ("question", question)):
            if not isinstance(value, str):
                raise ConfigError(f"Trace {name} must be a string, got {type(value).__name__}")
        config = dict(config or {})
        json_safe("config", config, ConfigError)
        self.graph = nx.DiGraph(program=program, strategy=strategy, config=config, question=question,
                                answer=None, usage={}, budget_exhausted=False, answer_node=None,
                                version=TRACE_VERSION)
        self.listener = listener
        self.max_nodes = max_nodes
        self._ids = itertools.count()

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __repr__(self) -> str:
        g = self.graph.graph
        return f"Trace(program={g['program']!r}, strategy={g['strategy']!r}, nodes={len(self)})"

    # --- building ---------------------------------------------------------------------------------

    def add_node(self, text: str, parent: str | None = None, depth: int | None = None,
                 status: str = "proposed", action: str | None = None, score: float | None = None,
                 calls: Iterable[str] = (), prompt_tokens: int = 0, completion_tokens: int = 0,
                 latency_s: float = 0.0, answer: Any = None, **extra: Any) -> str:
        """Add a thought and return its id ("n0", "n1", ...). ``action`` labels the edge from ``parent``;
        ``depth`` defaults to the parent's depth + 1 (0 for a root) and must equal it when given."""
        if len(self.graph) >= self.max_nodes:
            raise ConfigError(f"trace already holds {len(self.graph)} nodes (max_nodes={self.max_nodes}); "
                              "stop the search earlier or raise max_nodes (at most MAX_TRACE_NODES)")
        if parent is not None and parent not in self.graph:
            raise ConfigError(f"parent {parent!r} is not a node of this trace")
        if parent is None and action is not None:
            raise ConfigError("a root node (parent=None) has no incoming edge to carry action=...")
        if action is not None and not isinstance(action, str):
            raise ConfigError(f"action must be a string or None, got {type(action).__name__}")
        want = 0 if parent is None else self.graph.nodes[parent]["depth"] + 1
        if depth is None:
            depth = want
        elif depth != want:
            raise ConfigError(f"depth={depth!r} but the node's parent {parent!r} puts it at depth {want}")
        if reserved := sorted(set(extra) & set(RESERVED_ATTRS)):
            raise ConfigError(f"add_node cannot take extra attributes named {reserved}")
        if isinstance(calls, str):
            raise ConfigError("calls must be a list of call ids, not one string")
        attrs = {"depth": depth, "text": clip_text(text) if isinstance(text, str) else text,
                 "score": score, "status": status, "calls": list(calls), "prompt_tokens": prompt_tokens,
                 "completion_tokens": completion_tokens, "latency_s": latency_s, "answer": answer, **extra}
        check_node_attrs(attrs)
        nid = self._new_id()
        self.graph.add_node(nid, id=nid, **attrs)
        if parent is not None:
            self.graph.add_edge(parent, nid, action=action)
        self._emit({"type": "node", "node": {**copy.deepcopy(self.graph.nodes[nid]),
                                             "parent": parent, "action": action}})
        return nid

    def _new_id(self) -> str:
        nid = f"n{next(self._ids)}"
        while nid in self.graph:  # only after loading a trace whose ids are not all "n<int>"
            nid = f"n{next(self._ids)}"
        return nid

    def update(self, node_id: str, **changes: Any) -> None:
        """Change a node's attributes (status, score, tokens, answer, extras); id/depth/edges stay fixed."""
        if node_id not in self.graph:
            raise ConfigError(f"{node_id!r} is not a node of this trace")
        if fixed := sorted(set(changes) & set(RESERVED_ATTRS)):
            raise ConfigError(f"update() cannot change {fixed}; they are fixed when the node is added")
        if isinstance(changes.get("text"), str):
            changes["text"] = clip_text(changes["text"])
        if "calls" in changes:
            if isinstance(changes["calls"], str) or not isinstance(changes["calls"], Iterable):
                raise ConfigError("calls must be a list of call ids, not one string")
            changes["calls"] = list(changes["calls"])
        check_node_attrs(changes)
        self.graph.nodes[node_id].update(changes)
        self._emit({"type": "update", "id": node_id, **copy.deepcopy(changes)})

    def finish(self, answer: Any = None, usage: Mapping[str, Any] | None = None,
               budget_exhausted: bool = False, answer_node: str | None = None) -> None:
        """Record the search's outcome; ``answer_node`` (if given) must be a node of this trace."""
        if answer_node is not None and answer_node not in self.graph:
            raise ConfigError(f"answer_node {answer_node!r} is not a node of this trace")
        if not isinstance(budget_exhausted, bool):
            raise ConfigError(f"budget_exhausted must be a bool, got {budget_exhausted!r}")
        usage = dict(usage or {})
        json_safe("usage", usage, ConfigError)
        json_safe("answer", answer, ConfigError)
        outcome = {"answer": answer, "usage": usage, "budget_exhausted": budget_exhausted,
                   "answer_node": answer_node}
        self.graph.graph.update(outcome)
        self._emit({"type": "answer", **copy.deepcopy(outcome)})

    def _emit(self, event: dict) -> None:
        if self.listener is not None:
            self.listener(event)

    # --- reading ----------------------------------------------------------------------------------

    def best_path(self) -> list[str]:
        """Ids from the root to ``answer_node`` when ``finish`` named one, else to the best leaf; [] if empty.

        Best leaf, tie-break in order: a leaf that is not pruned beats a pruned one, a scored leaf beats
        an unscored one, a higher score wins, and among equals the leaf added first wins."""
        g = self.graph
        if not len(g):
            return []
        target = g.graph.get("answer_node")
        if target is None or target not in g:
            order = {n: i for i, n in enumerate(g)}

            def rank(n: str) -> tuple:
                a = g.nodes[n]
                score = a.get("score")
                return (a.get("status") != "pruned", score is not None, score or 0.0, -order[n])

            target = max((n for n in g if g.out_degree(n) == 0), key=rank)
        return self.path_to(target)

    def path_to(self, node_id: str) -> list[str]:
        """Ids from the root to ``node_id`` (a tree: one parent each)."""
        path = [node_id]
        while parents := list(self.graph.predecessors(path[-1])):
            path.append(parents[0])
        return path[::-1]

    def steps_to(self, node_id: str) -> list[str]:
        """The text of each node below the root on its path to ``node_id``, stripped: the steps taken."""
        return [str(self.graph.nodes[n].get("text") or "").strip() for n in self.path_to(node_id)[1:]]

    def stats(self) -> dict[str, Any]:
        """Counts over the tree. ``mean_branching`` is children per non-leaf node; ``lm_calls`` counts
        distinct call ids; token figures sum what the nodes record."""
        g = self.graph
        n, e = g.number_of_nodes(), g.number_of_edges()
        inner = sum(1 for v in g if g.out_degree(v) > 0)
        nodes = [a for _, a in g.nodes(data=True)]
        prompt = sum(a["prompt_tokens"] for a in nodes)
        completion = sum(a["completion_tokens"] for a in nodes)
        pruned = sum(1 for a in nodes if a["status"] == "pruned")
        return {
            "nodes": n, "edges": e, "max_depth": max((a["depth"] for a in nodes), default=0),
            "mean_branching": e / inner if inner else 0.0, "pruned_share": pruned / n if n else 0.0,
            "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "lm_calls": len({c for a in nodes for c in a["calls"]}),
            "budget_exhausted": bool(g.graph.get("budget_exhausted")),
        }

    def summary(self) -> str:
        """Plain-text report for the CLI: program, question, answer, stats and the best path."""
        g, s, path = self.graph.graph, self.stats(), self.best_path()
        answer = "(none)" if g["answer"] is None else _one_line(str(g["answer"]), 200)
        lines = [
            f"program   {g['program']}  (strategy {g['strategy']})",
            f"question  {_one_line(g['question'], 300)}",
            f"answer    {answer}" + ("  [budget exhausted]" if s["budget_exhausted"] else ""),
            f"nodes {s['nodes']}, edges {s['edges']}, max depth {s['max_depth']}, "
            f"branching {s['mean_branching']:.2f}, pruned {s['pruned_share']:.1%}",
            f"tokens {s['total_tokens']} (prompt {s['prompt_tokens']}, completion {s['completion_tokens']}), "
            f"LM calls {s['lm_calls']}",
            f"best path ({len(path)} nodes):",
        ]
        for nid in path:
            a = self.graph.nodes[nid]
            score = "-" if a["score"] is None else f"{a['score']:.3g}"
            lines.append(f"  {nid:>6}  depth {a['depth']:<2}  score {score:>7}  {a['status']:<8}  "
                         f"{_one_line(a['text'], 100)}")
        return "\n".join(lines)

    # --- files ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Node-link data (``edges`` key) with ``format`` and ``version``; shares nothing with the graph."""
        return io.graph_to_dict(self.graph)

    @classmethod
    def from_dict(cls, data: Any, listener: Listener | None = None) -> Trace:
        """Inverse of ``to_dict``; raises ArtifactError on anything malformed."""
        return cls._wrap(io.graph_from_dict(data), listener)

    def save(self, path: str | os.PathLike) -> Path:
        """Write node-link JSON atomically; return the path."""
        return io.write_json(self.graph, path)

    @classmethod
    def load(cls, path: str | os.PathLike, listener: Listener | None = None) -> Trace:
        """Read a file written by ``save``; ArtifactError if truncated, garbage, wrong format or version."""
        return cls._wrap(io.read_json(path), listener)

    def to_graphml(self, path: str | os.PathLike) -> Path:
        """Write GraphML (lists, dicts and None stored as JSON text); return the path."""
        return io.write_graphml(self.graph, path)

    @classmethod
    def from_graphml(cls, path: str | os.PathLike, listener: Listener | None = None) -> Trace:
        """Read GraphML written by ``to_graphml``."""
        return cls._wrap(io.read_graphml(path), listener)

    def to_html(self, path: str | os.PathLike) -> Path:
        """Write the self-contained HTML viewer (no external URLs); return the path."""
        from reasonflow.trace.html import write_html
        return write_html(self, path)

    @classmethod
    def _wrap(cls, graph: nx.DiGraph, listener: Listener | None) -> Trace:
        g = graph.graph
        trace = cls(program=g["program"], strategy=g["strategy"], config=g["config"],
                    question=g["question"], listener=listener)
        trace.graph = graph
        numbers = [int(n[1:]) for n in graph if n[:1] == "n" and n[1:].isdigit()]
        trace._ids = itertools.count(max(numbers, default=-1) + 1)
        return trace


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
