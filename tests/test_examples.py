"""The custom-program example's task searches correctly (scripted LM, offline)."""

import importlib.util
from pathlib import Path

import dspy

import reasonflow
from reasonflow.strategies import TreeOfThought
from reasonflow.testing import ScriptedLM

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_program.py"


def load_example():
    spec = importlib.util.spec_from_file_location("custom_program", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_custom_task_reaches_the_target_and_prunes_illegal_moves():
    example = load_example()
    lm = ScriptedLM(lambda call: [{"next_step": s} for s in ["*5", "+3", "*9", "+4"][: call.n]])
    with dspy.context(lm=lm, adapter=reasonflow.StructuredAdapter()):
        pred = TreeOfThought(example.task, breadth=3, depth=5, proposals=4)(question="Reach 20.")
    assert pred.answer == "20"
    illegal = [d for _, d in pred.trace.graph.nodes(data=True) if d["text"] == "*9"]
    assert illegal and all(d["status"] == "pruned" and d["reason"] == "illegal step" for d in illegal)
