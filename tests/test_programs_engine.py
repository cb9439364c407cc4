"""Every strategy end to end on the real engine: one GSM8K question and one Game of 24 puzzle."""

from __future__ import annotations

import asyncio

import dspy
import pytest

import reasonflow
from reasonflow import Budget, StructuredAdapter
from reasonflow.data import load
from reasonflow.strategies import DFS, MCTS, BestOfN, ChainOfThought, SelfConsistency, TreeOfThought
from reasonflow.trace import NODE_STATUSES, Trace

pytestmark = pytest.mark.engine

SMALL = Budget(max_nodes=40, max_lm_calls=30, deadline_s=300)


def strategies(task):
    return {
        "cot": ChainOfThought(task),
        "sc": SelfConsistency(task, k=4),
        "bon": BestOfN(task, n=2),
        "tot": TreeOfThought(task, breadth=2, depth=2, proposals=2, budget=SMALL),
        "dfs": DFS(task, depth=2, proposals=2, threshold=0.25, budget=SMALL),
        "mcts": MCTS(task, iterations=2, depth=2, proposals=2, budget=SMALL),
    }


@pytest.mark.parametrize("task_name", ["gsm8k", "game24"])
def test_every_strategy_runs_end_to_end(engine, data_dir, tmp_path, task_name):
    from programs.game24 import GAME24
    from programs.gsm8k import GSM8K

    task = {"gsm8k": GSM8K, "game24": GAME24}[task_name]
    question = load(task_name, data_dir=data_dir, limit=1, offset=900 if task_name == "game24" else 0)[0].question
    programs = strategies(task)
    if task_name == "gsm8k":
        programs["pot"] = reasonflow.program("gsm8k.pot@2")
    lm = reasonflow.connect(engine.base_url, max_tokens=256)

    async def run_all():
        with dspy.context(lm=lm, adapter=StructuredAdapter()):
            return await asyncio.gather(*(p.acall(question=question) for p in programs.values()))

    for name, pred in zip(programs, asyncio.run(run_all())):
        trace = pred.trace
        assert pred.usage["calls"] >= 1 and pred.usage["completion_tokens"] > 0, name
        assert len(trace) >= 2, name
        assert {d["status"] for _, d in trace.graph.nodes(data=True)} <= set(NODE_STATUSES), name
        again = Trace.load(trace.save(tmp_path / f"{task_name}-{name}.json"))
        assert set(again.graph.edges) == set(trace.graph.edges), name
        if pred.answer is not None:
            assert trace.graph.graph["answer"] is not None, name
