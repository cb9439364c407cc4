"""Trace building, validation, statistics and file round trips (reasonflow.trace). Offline, no LM."""

from __future__ import annotations

import asyncio
import json

import networkx as nx
import pytest

from reasonflow.errors import ArtifactError, ConfigError
from reasonflow.trace import MAX_NODE_TEXT_CHARS, MAX_TRACE_NODES, NODE_STATUSES, Trace


def hand_built_tree(listener=None) -> Trace:
    """n0 ─┬─ n1 ─┬─ n3 (terminal .9)     n1 expanded .6
           │      └─ n4 (pruned .95)
           ├─ n2 (pruned .2)
           └─ n5 (proposed, unscored)"""
    t = Trace(program="gsm8k.tot", strategy="tot", config={"breadth": 3, "depth": 2},
              question="A farm has 16 eggs...", listener=listener)
    t.add_node(text="question", status="expanded", calls=["c0"], prompt_tokens=10, completion_tokens=5)
    t.add_node(text="step 1a", parent="n0", action="propose", status="expanded", score=0.6,
               calls=["c1"], prompt_tokens=20, completion_tokens=8, latency_s=0.25)
    t.add_node(text="step 1b", parent="n0", action="propose", status="pruned", score=0.2,
               calls=["c1"], completion_tokens=8)
    t.add_node(text="step 2a", parent="n1", action="propose", status="terminal", score=0.9,
               calls=["c2"], prompt_tokens=30, completion_tokens=9, answer="18")
    t.add_node(text="step 2b", parent="n1", action="propose", status="pruned", score=0.95,
               calls=["c2"], completion_tokens=9)
    t.add_node(text="step 1c", parent="n0", action="propose")
    return t


def test_ids_are_sequential_strings_and_unique_across_asyncio_tasks():
    t = Trace(program="p", strategy="s")
    root = t.add_node(text="root")

    async def grow(k: int) -> list[str]:
        ids = []
        for _ in range(25):
            await asyncio.sleep(0)
            ids.append(t.add_node(text=f"task {k}", parent=root))
        return ids

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(grow(k) for k in range(8)))

    ids = [i for chunk in asyncio.run(main()) for i in chunk]
    assert root == "n0"
    assert sorted(ids, key=lambda s: int(s[1:])) == [f"n{i}" for i in range(1, 201)]
    assert t.graph.number_of_nodes() == 201 and t.graph.out_degree(root) == 200


def test_save_load_round_trip_keeps_every_node_edge_and_graph_attr(tmp_path):
    t = hand_built_tree()
    t.update("n3", status="answer", visits=4, extra={"why": ["a", "b"]})
    t.finish(answer="18", usage={"prompt_tokens": 60, "completion_tokens": 39}, budget_exhausted=True,
             answer_node="n3")
    loaded = Trace.load(t.save(tmp_path / "sub" / "trace.json"))
    assert dict(loaded.graph.nodes(data=True)) == dict(t.graph.nodes(data=True))
    assert list(loaded.graph.edges(data=True)) == list(t.graph.edges(data=True))
    assert [a["action"] for *_, a in loaded.graph.edges(data=True)] == ["propose"] * 5
    assert loaded.graph.graph == t.graph.graph
    assert loaded.graph.graph["usage"] == {"prompt_tokens": 60, "completion_tokens": 39}
    assert loaded.to_dict() == t.to_dict()


def test_to_dict_is_node_link_data_with_format_version_and_explicit_edges_key():
    d = hand_built_tree().to_dict()
    assert d["format"] == "reasonflow.trace" and d["version"] == 1
    assert "edges" in d and "links" not in d and len(d["edges"]) == 5
    assert {"source": "n1", "target": "n3", "action": "propose"} in d["edges"]
    json.dumps(d, allow_nan=False)  # strict JSON
    d["graph"]["config"]["breadth"] = 99  # a copy: editing it leaves the trace alone
    assert Trace.from_dict(hand_built_tree().to_dict()).graph.graph["config"]["breadth"] == 3


def test_loaded_trace_keeps_adding_unique_ids(tmp_path):
    loaded = Trace.load(hand_built_tree().save(tmp_path / "t.json"))
    assert loaded.add_node(text="more", parent="n5") == "n6"


def test_graphml_export_parses_back_with_networkx_and_trace(tmp_path):
    t = hand_built_tree()
    t.finish(answer=None, usage={"calls": 3}, answer_node=None)
    path = t.to_graphml(tmp_path / "t.graphml")
    plain = nx.read_graphml(path)
    assert plain.is_directed()
    assert (plain.number_of_nodes(), plain.number_of_edges()) == (6, 5)
    assert plain.nodes["n3"]["score"] == "0.9"  # mixed None/float key: stored as JSON text
    assert plain.nodes["n3"]["text"] == "step 2a" and plain.edges["n0", "n1"]["action"] == "propose"
    assert Trace.from_graphml(path).to_dict() == t.to_dict()


def _corrupt(doc: dict, how: str) -> object:
    if how == "wrong format":
        doc["format"] = "something.else"
    elif how == "future version":
        doc["version"] = 2
    elif how == "edge to unknown node":
        doc["edges"].append({"source": "n0", "target": "n99", "action": None})
    elif how == "unknown status":
        doc["nodes"][1]["status"] = "exploded"
    elif how == "duplicate ids":
        doc["nodes"].append(dict(doc["nodes"][0]))
    elif how == "two parents":
        doc["edges"].append({"source": "n2", "target": "n3", "action": None})
    elif how == "missing node attr":
        del doc["nodes"][2]["depth"]
    elif how == "not an object":
        return [doc]
    return doc


@pytest.mark.parametrize("how", ["wrong format", "future version", "edge to unknown node", "unknown status",
                                 "duplicate ids", "two parents", "missing node attr", "not an object"])
def test_load_refuses_malformed_documents(tmp_path, how):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_corrupt(hand_built_tree().to_dict(), how)))
    with pytest.raises(ArtifactError):
        Trace.load(path)


def test_load_names_the_newer_version_and_what_to_do(tmp_path):
    doc = hand_built_tree().to_dict()
    doc["version"] = 7
    (tmp_path / "t.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=r"version 7 .*newer reasonflow.*upgrade"):
        Trace.load(tmp_path / "t.json")


def test_load_refuses_truncated_file(tmp_path):
    path = hand_built_tree().save(tmp_path / "t.json")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactError, match="truncated"):
        Trace.load(path)


@pytest.mark.parametrize("content", [b"", b"\x80\x03}q\x00.", b"hello, not json", b"\xff\xfe\x00garbage", b"42"])
def test_load_refuses_garbage(tmp_path, content):
    (tmp_path / "g.json").write_bytes(content)
    with pytest.raises(ArtifactError):
        Trace.load(tmp_path / "g.json")


def test_load_of_missing_file_is_an_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match="cannot read"):
        Trace.load(tmp_path / "absent.json")


def test_from_graphml_refuses_foreign_graphml_and_garbage(tmp_path):
    nx.write_graphml(nx.path_graph(3, create_using=nx.DiGraph), tmp_path / "foreign.graphml")
    (tmp_path / "junk.graphml").write_text("<graphml><unclosed>")
    for name in ("foreign.graphml", "junk.graphml"):
        with pytest.raises(ArtifactError):
            Trace.from_graphml(tmp_path / name)


def test_best_path_follows_answer_node_when_set():
    t = hand_built_tree()
    t.finish(answer="x", answer_node="n2")
    assert t.best_path() == ["n0", "n2"]


def test_best_path_picks_highest_scored_unpruned_leaf():
    # n4 (pruned, .95) outscores n3 (terminal, .9) but is pruned; n5 is unscored
    assert hand_built_tree().best_path() == ["n0", "n1", "n3"]


def test_best_path_tie_goes_to_the_leaf_added_first():
    t = Trace(program="p", strategy="s")
    t.add_node(text="r")
    t.add_node(text="a", parent="n0", score=0.5)
    t.add_node(text="b", parent="n0", score=0.7)
    t.add_node(text="c", parent="n0", score=0.7)
    assert t.best_path() == ["n0", "n2"]


def test_best_path_of_empty_trace_is_empty():
    assert Trace(program="p", strategy="s").best_path() == []


def test_stats_on_hand_built_tree_are_exact():
    t = hand_built_tree()
    t.finish(answer="18", budget_exhausted=True, answer_node="n3")
    assert t.stats() == {
        "nodes": 6, "edges": 5, "max_depth": 2,
        "mean_branching": 2.5,  # n0 has 3 children, n1 has 2
        "pruned_share": pytest.approx(2 / 6),
        "prompt_tokens": 60, "completion_tokens": 39, "total_tokens": 99,
        "lm_calls": 3,  # c0, c1, c2: shared call ids count once
        "budget_exhausted": True,
    }


def test_stats_of_empty_trace_are_zero():
    s = Trace(program="p", strategy="s").stats()
    assert (s["nodes"], s["max_depth"], s["mean_branching"], s["pruned_share"], s["lm_calls"]) == (0, 0, 0.0, 0.0, 0)


def test_every_documented_status_is_accepted_and_others_are_config_errors():
    t = Trace(program="p", strategy="s")
    for status in NODE_STATUSES:
        t.update(t.add_node(text=status, status=status), status=status)
    with pytest.raises(ConfigError, match="status must be one of"):
        t.add_node(text="x", status="done")
    with pytest.raises(ConfigError, match="status must be one of"):
        t.update("n0", status="Pruned")
    assert t.graph.nodes["n0"]["status"] == "proposed"


@pytest.mark.parametrize("kwargs, match", [
    ({"parent": "n42"}, "not a node"),
    ({"parent": "n0", "depth": 3}, "depth"),
    ({"action": "propose"}, "root node"),
    ({"score": float("nan")}, "finite"),
    ({"score": float("inf")}, "finite"),
    ({"calls": "call-1"}, "list of call ids"),
    ({"prompt_tokens": -1}, "int >= 0"),
    ({"unserialisable": object()}, "JSON-serializable"),
    ({"type": "x"}, "extra attributes"),
])
def test_add_node_rejects_invalid_arguments(kwargs, match):
    t = Trace(program="p", strategy="s")
    t.add_node(text="root")
    with pytest.raises(ConfigError, match=match):
        t.add_node(text="x", **kwargs)
    assert len(t) == 1


def test_update_refuses_structural_attributes_and_unknown_nodes():
    t = hand_built_tree()
    for change in ({"id": "z"}, {"depth": 5}, {"action": "x"}):
        with pytest.raises(ConfigError, match="fixed"):
            t.update("n1", **change)
    with pytest.raises(ConfigError, match="not a node"):
        t.update("n77", status="pruned")
    with pytest.raises(ConfigError, match="not a node"):
        t.finish(answer_node="n77")


def test_node_bound_default_is_max_trace_nodes():
    t = Trace(program="p", strategy="s")
    root = t.add_node(text="root")
    for _ in range(MAX_TRACE_NODES - 1):
        t.add_node(text="x", parent=root)
    with pytest.raises(ConfigError, match="max_nodes"):
        t.add_node(text="one too many", parent=root)
    assert len(t) == MAX_TRACE_NODES


def test_node_bound_can_be_lowered_but_not_raised():
    t = Trace(program="p", strategy="s", max_nodes=2)
    t.add_node(text="a")
    t.add_node(text="b")
    with pytest.raises(ConfigError):
        t.add_node(text="c")
    with pytest.raises(ConfigError, match="MAX_TRACE_NODES"):
        Trace(program="p", strategy="s", max_nodes=MAX_TRACE_NODES + 1)


def test_long_node_text_is_clipped_with_a_marker():
    t = Trace(program="p", strategy="s")
    nid = t.add_node(text="x" * (MAX_NODE_TEXT_CHARS + 500))
    text = t.graph.nodes[nid]["text"]
    assert text.startswith("x" * MAX_NODE_TEXT_CHARS) and text.endswith("[500 characters cut by reasonflow.trace]")


def test_listener_sees_node_update_and_answer_events_in_order():
    events = []
    t = Trace(program="p", strategy="s", listener=events.append)
    root = t.add_node(text="q", status="expanded", calls=["c0"])
    child = t.add_node(text="a", parent=root, action="propose", score=0.5)
    t.update(child, status="answer", score=0.75)
    t.finish(answer="18", usage={"total_tokens": 9}, budget_exhausted=False, answer_node=child)
    assert [e["type"] for e in events] == ["node", "node", "update", "answer"]
    assert events[1]["node"] == {"id": "n1", "depth": 1, "text": "a", "score": 0.5, "status": "proposed",
                                 "calls": [], "prompt_tokens": 0, "completion_tokens": 0, "latency_s": 0.0,
                                 "answer": None, "parent": "n0", "action": "propose"}
    assert events[2] == {"type": "update", "id": "n1", "status": "answer", "score": 0.75}
    assert events[3] == {"type": "answer", "answer": "18", "usage": {"total_tokens": 9},
                         "budget_exhausted": False, "answer_node": "n1"}
    events[0]["node"]["calls"].append("mutated")  # events are copies
    assert t.graph.nodes[root]["calls"] == ["c0"]


def test_rejected_changes_emit_no_event():
    events = []
    t = Trace(program="p", strategy="s", listener=events.append)
    t.add_node(text="q")
    with pytest.raises(ConfigError):
        t.update("n0", status="bogus")
    assert [e["type"] for e in events] == ["node"]


def test_summary_shows_program_question_answer_stats_and_best_path():
    t = hand_built_tree()
    t.update("n3", text="The answer is 18. " + "y" * 300)
    t.finish(answer="18", budget_exhausted=True, answer_node="n3")
    text = t.summary()
    assert "gsm8k.tot" in text and "A farm has 16 eggs..." in text and "answer    18" in text
    assert "budget exhausted" in text and "nodes 6, edges 5, max depth 2, branching 2.50" in text
    path_lines = text.split("best path (3 nodes):\n")[1].splitlines()
    assert [line.split()[0] for line in path_lines] == ["n0", "n1", "n3"]
    assert "depth 2   score     0.9  terminal" in path_lines[2]
    assert path_lines[2].endswith("The answer is 18. " + "y" * 82 + "...")
