"""Offline behaviour of the search strategies, driven by a scripted LM."""

from __future__ import annotations

import asyncio
import json

import dspy
import pytest

from reasonflow import Budget, StructuredAdapter
from reasonflow.search import Task
from reasonflow.strategies import DFS, MCTS, BestOfN, ChainOfThought, SelfConsistency, TreeOfThought
from reasonflow.strategies.mcts import backup, uct
from reasonflow.testing import ScriptedLM


def kind(call) -> str:
    for field, name in (("next_step", "propose"), ("verdict", "value"), ("best", "vote"),
                        ("correct_probability", "judge"), ("reasoning", "solve")):
        if f"`{field}`" in call.system:
            return name
    return "answer"


def run(program, lm, question="q"):
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        return program(question=question)


def tree_script(values: dict[str, float], branching: int = 3):
    """Proposals 'a','b','c' appended to the path; the answer is the path; values from the table."""

    def script(call):
        k = kind(call)
        steps = call.inputs.get("steps", "")
        path = "".join(steps.split("\n"))
        if k == "propose":
            return [{"next_step": path + chr(ord("a") + i)} for i in range(call.n)][:branching] * 1
        if k == "answer":
            return {"answer": steps.split("\n")[-1]}
        raise AssertionError(k)

    evaluator = lambda q, steps: values.get(steps[-1], 0.0)  # noqa: E731
    return script, evaluator


def test_bfs_keeps_the_top_b_states_at_every_depth():
    values = {"a": 0.9, "b": 0.2, "c": 0.5, "aa": 0.1, "ab": 0.3, "ac": 0.2, "ca": 0.95, "cb": 0.0, "cc": 0.4}
    script, evaluator = tree_script(values)
    tot = TreeOfThought(Task("t"), breadth=2, depth=2, proposals=3, evaluator=evaluator)
    pred = run(tot, ScriptedLM(script))
    g = pred.trace.graph
    by_text = {d["text"]: d for _, d in g.nodes(data=True)}
    assert {t for t in ("a", "b", "c") if by_text[t]["status"] == "selected"} == {"a", "c"}
    assert by_text["b"]["status"] == "pruned" and not list(g.successors(by_text["b"]["id"]))
    kept = {t for t in ("aa", "ab", "ac", "ca", "cb", "cc") if by_text[t]["status"] in ("selected", "terminal", "answer")}
    assert kept == {"ca", "cc"}
    assert pred.answer == "ca"


def test_beam_ranks_by_path_value_where_bfs_ranks_by_last_step():
    values = {"a": 0.9, "b": 0.3, "c": 0.1, "aa": 0.5, "ab": 0.4, "ac": 0.0, "ba": 0.8, "bb": 0.0, "bc": 0.0}
    script, evaluator = tree_script(values)
    answers = {}
    for mode in ("bfs", "beam"):
        tot = TreeOfThought(Task("t"), breadth=2, depth=2, proposals=3, evaluator=evaluator, mode=mode)
        answers[mode] = run(tot, ScriptedLM(script)).answer
    assert answers == {"bfs": "ba", "beam": "aa"}  # ba: 0.8 alone; aa: (0.9+0.5)/2 = 0.7 > (0.3+0.8)/2


def test_frontier_proposals_go_out_as_one_n_request_per_state():
    script, evaluator = tree_script({})
    lm = ScriptedLM(script)
    run(TreeOfThought(Task("t"), breadth=3, depth=2, proposals=3, evaluator=evaluator), lm)
    proposes = [c for c in lm.calls if kind(c) == "propose"]
    assert [c.n for c in proposes] == [3, 3, 3, 3]  # root, then the 3 kept states


def test_identical_states_are_evaluated_once():
    def script(call):
        if kind(call) == "propose":
            return [{"next_step": "same step"}] * call.n
        if kind(call) == "value":
            return {"verdict": "likely"}
        return {"answer": "x"}

    lm = ScriptedLM(script)
    pred = run(TreeOfThought(Task("t"), breadth=3, depth=1, proposals=4), lm)
    assert sum(kind(c) == "value" for c in lm.calls) == 1
    statuses = sorted(d["status"] for _, d in pred.trace.graph.nodes(data=True) if d["depth"] == 1)
    assert statuses == ["answer", "pruned", "pruned", "pruned"]


def test_a_states_children_are_valued_as_soon_as_its_own_proposals_arrive():
    slow_s = 0.6

    def script(call):
        steps = call.inputs.get("steps", "")
        path = "".join(steps.split("\n"))
        if kind(call) == "propose":
            return [{"next_step": c} for c in "xy"][: call.n]
        if kind(call) == "value":
            return {"verdict": "sure" if path == "yy" else "likely"}  # the best leaf is on the slow branch
        return {"answer": path}

    def delay(call):  # the second frontier state's proposals are slow
        return slow_s if kind(call) == "propose" and call.inputs.get("steps", "") == "y" else 0.0

    def search(lm):
        return run(TreeOfThought(Task("t"), breadth=2, depth=2, proposals=2), lm)

    lm = ScriptedLM(script, delay_s=delay)
    pred = search(lm)
    slow = next(c for c in lm.calls if kind(c) == "propose" and c.inputs.get("steps") == "y")
    first_child_values = [c for c in lm.calls if kind(c) == "value" and c.inputs.get("steps", "").startswith("x\n")]
    assert first_child_values and all(c.started < slow.started + slow_s / 2 for c in first_child_values)
    reference = search(ScriptedLM(script))  # the same search without the delay: same tree, same answer
    assert pred.answer == reference.answer == "yy"
    assert [(d["text"], d["status"]) for _, d in pred.trace.graph.nodes(data=True)] == \
        [(d["text"], d["status"]) for _, d in reference.trace.graph.nodes(data=True)]


def test_sibling_value_prompts_are_byte_identical_up_to_their_own_step():
    """The prefix cache serves what siblings share: the system message, the question and the parent's steps."""
    import os

    def script(call):
        if kind(call) == "propose":
            return [{"next_step": f"step {c}"} for c in "xyz"][: call.n]
        if kind(call) == "value":
            return {"verdict": "likely"}
        return {"answer": "a"}

    lm = ScriptedLM(script)
    run(TreeOfThought(Task("t"), breadth=1, depth=2, proposals=3), lm, question="What is 6 * 7?")
    values = [c for c in lm.calls if kind(c) == "value"]
    depth2 = [c for c in values if c.inputs["steps"].count("\n") == 1]
    assert len(depth2) == 3
    texts = [json.dumps(c.messages) for c in depth2]
    shared = os.path.commonprefix(texts)
    parent_steps = depth2[0].inputs["steps"].split("\n")[0]
    assert json.dumps(parent_steps)[1:-1] in shared and all(t != texts[0] for t in texts[1:])
    assert shared.startswith(json.dumps(depth2[0].messages[:1])[:-1])  # the whole system message is shared


def test_illegal_steps_are_pruned_before_evaluation():
    task = Task("t", validate_step=lambda q, steps, step: step != "b")
    script, evaluator = tree_script({"a": 0.5, "c": 0.5})
    seen = []
    pred = run(TreeOfThought(task, breadth=3, depth=1, evaluator=lambda q, s: seen.append(s[-1]) or 0.5), ScriptedLM(script))
    assert sorted(seen) == ["a", "c"]
    b = next(d for _, d in pred.trace.graph.nodes(data=True) if d["text"] == "b")
    assert b["status"] == "pruned" and b["reason"] == "illegal step"


def test_dfs_backtracks_out_of_a_dead_end():
    # a looks best but all its children fall below the threshold; c leads to a terminal answer.
    values = {"a": 0.9, "b": 0.1, "c": 0.6, "aa": 0.2, "ab": 0.1, "ac": 0.0, "ca": 0.7, "cb": 0.3, "cc": 0.1}
    script, evaluator = tree_script(values)
    lm = ScriptedLM(script)
    pred = run(DFS(Task("t"), threshold=0.5, depth=2, evaluator=evaluator), lm)
    by_text = {d["text"]: d for _, d in pred.trace.graph.nodes(data=True)}
    assert by_text["a"]["status"] == "pruned" and by_text["a"]["reason"] == "backtracked"
    assert by_text["b"]["reason"] == "below threshold"
    assert pred.answer == "ca" and by_text["ca"]["status"] == "answer"
    expanded = [c.inputs.get("steps", "") for c in lm.calls if kind(c) == "propose"]
    assert expanded == ["", "a", "c"]  # b was never expanded: the search stopped at the first good terminal


def test_uct_prefers_unvisited_then_balances_value_and_exploration():
    assert uct(10, 0, 0.0, 1.0) == float("inf")
    assert uct(10, 5, 4.0, 0.0) == pytest.approx(0.8)
    assert uct(100, 1, 0.5, 1.0) > uct(100, 50, 40.0, 1.0)  # rarely visited gets the bonus


def test_backup_adds_value_to_every_node_on_the_path():
    visits, sums = {"r": 0, "a": 0, "b": 0}, {"r": 0.0, "a": 0.0, "b": 0.0}
    backup(visits, sums, ["r", "a"], 1.0)
    backup(visits, sums, ["r", "b"], 0.25)
    assert visits == {"r": 2, "a": 1, "b": 1} and sums == {"r": 1.25, "a": 1.0, "b": 0.25}


def test_mcts_visit_counts_and_means_are_consistent():
    values = {"a": 0.9, "b": 0.1, "c": 0.2, "aa": 1.0, "ab": 0.0, "ac": 0.5}
    script, evaluator = tree_script(values)
    pred = run(MCTS(Task("t"), iterations=4, depth=2, evaluator=evaluator), ScriptedLM(script))
    g = pred.trace.graph
    for node, data in g.nodes(data=True):
        kids = [k for k in g.successors(node) if "visits" in g.nodes[k]]
        if kids and node != "n0":
            # a node's visits: one per child backup passing through it, plus its own evaluation
            assert data["visits"] == sum(g.nodes[k]["visits"] for k in kids) + 1
    assert g.nodes["n0"]["visits"] == sum(g.nodes[k]["visits"] for k in g.successors("n0"))
    assert pred.answer == "aa"


def always_branching(call):
    if kind(call) == "propose":
        return [{"next_step": f"s{len(call.inputs.get('steps', ''))}-{i}"} for i in range(call.n)]
    if kind(call) == "value":
        return {"verdict": "likely"}
    return {"answer": "best so far"}


@pytest.mark.parametrize("budget, bound", [
    (Budget(max_nodes=10), "max_nodes"),
    (Budget(max_lm_calls=6), "max_lm_calls"),
    (Budget(deadline_s=0.5), "deadline"),
])
@pytest.mark.parametrize("strategy", ["tot", "dfs", "mcts"])
def test_budget_stops_search_and_keeps_best_so_far(budget, bound, strategy):
    task = Task("t")
    program = {"tot": lambda: TreeOfThought(task, breadth=3, depth=50, budget=budget),
               "dfs": lambda: DFS(task, threshold=0.1, depth=50, budget=budget),
               "mcts": lambda: MCTS(task, iterations=1000, depth=50, budget=budget)}[strategy]()
    lm = ScriptedLM(always_branching, delay_s=0.05 if bound == "deadline" else 0.0)
    pred = run(program, lm)
    g = pred.trace.graph.graph
    assert pred.budget_exhausted and g["budget_exhausted"] and g["exhausted_by"] == bound
    if bound != "deadline":
        assert pred.answer == "best so far"
    if bound == "max_nodes":
        assert len(pred.trace) <= budget.max_nodes + 3 * 3  # one round may finish past the bound
    if bound == "max_lm_calls":
        assert pred.usage["calls"] <= budget.max_lm_calls + 3 + 1


def test_self_consistency_samples_in_one_request_and_reports_votes():
    answers = iter([["18", "20", "18.0", "20", "7"]])

    def script(call):
        return [{"reasoning": f"r{i}", "answer": a} for i, a in enumerate(next(answers))]

    from reasonflow.checking import numeric_equivalent
    lm = ScriptedLM(script)
    sc = SelfConsistency(Task("t", equivalent=numeric_equivalent), k=5)
    pred = run(sc, lm)
    assert len(lm.calls) == 1 and lm.calls[0].n == 5
    assert pred.answer == "18" and pred.votes == [["18", 2], ["20", 2], ["7", 1]]  # tie: first seen wins
    selected = [d["answer"] for _, d in pred.trace.graph.nodes(data=True) if d["status"] in ("selected", "answer")]
    assert sorted(selected) == ["18", "18.0"]


def test_best_of_n_with_callable_verifier_picks_highest_score():
    lm = ScriptedLM(lambda call: [{"reasoning": "x", "answer": a} for a in ["3", "9", "5"]])
    pred = run(BestOfN(Task("t"), n=3, verifier=lambda q, r, a: float(a)), lm)
    assert pred.answer == "9" and pred.scores == [3.0, 9.0, 5.0]


def test_best_of_n_with_lm_judge_scores_every_sample_concurrently():
    def script(call):
        if kind(call) == "judge":
            return {"correct_probability": 0.9 if call.inputs["answer"] == "5" else 0.2}
        return [{"reasoning": "x", "answer": a} for a in ["3", "5"]]

    lm = ScriptedLM(script, delay_s=0.2)
    pred = run(BestOfN(Task("t"), n=2), lm)
    judges = [c for c in lm.calls if kind(c) == "judge"]
    assert pred.answer == "5" and len(judges) == 2
    assert abs(judges[0].started - judges[1].started) < 0.15


def test_chain_of_thought_records_one_reasoning_node():
    lm = ScriptedLM(lambda call: {"reasoning": "2+2=4", "answer": "4"})
    pred = run(ChainOfThought(Task("t")), lm)
    assert pred.answer == "4" and pred.reasoning == "2+2=4"
    assert len(pred.trace) == 2 and pred.usage["calls"] == 1


def test_strategies_run_from_inside_an_event_loop_and_async():
    lm = ScriptedLM(lambda call: {"reasoning": "r", "answer": "4"})
    cot = ChainOfThought(Task("t"))

    async def main():
        with dspy.context(lm=lm, adapter=StructuredAdapter()):
            sync_result = cot(question="q")  # sync call while a loop runs: bridged through a thread
            async_result = await cot.acall(question="q")
        return sync_result.answer, async_result.answer

    assert asyncio.run(main()) == ("4", "4")


def test_compiled_state_round_trips_through_json(tmp_path):
    tot = TreeOfThought(Task("t"))
    tot.propose.demos = [dspy.Example(question="q", steps="", next_step="first")]
    path = tmp_path / "tot.json"
    tot.save(str(path))
    assert json.loads(path.read_text())["propose"]["demos"][0]["next_step"] == "first"
    fresh = TreeOfThought(Task("t"))
    fresh.load(str(path))
    assert fresh.propose.demos[0]["next_step"] == "first"
