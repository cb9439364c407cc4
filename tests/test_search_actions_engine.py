"""Action spaces on the real engine: every proposal is legal by construction, for the base model and
the committed Game of 24 adapter, and for GSM8K program statements."""

from __future__ import annotations

import re

import dspy
import pytest

import reasonflow
from programs.game24 import actions
from programs.gsm8k import statement_pattern
from reasonflow import StructuredAdapter
from reasonflow.data import load
from tests.conftest import DEFAULT_ADAPTER, GAME24_ADAPTER

pytestmark = pytest.mark.engine


def proposals(trace):
    """(parent's steps, proposal, node attributes) for every proposed node: the path of steps from the root."""
    graph = trace.graph
    return [(trace.steps_to(node)[:-1], str(graph.nodes[node]["text"]), graph.nodes[node])
            for node in graph if graph.in_degree(node)]


@pytest.mark.parametrize("model", [None, GAME24_ADAPTER])
def test_every_game24_proposal_is_a_legal_move(engine, data_dir, model):
    puzzles = [ex.question for ex in load("game24", data_dir=data_dir, offset=900, limit=2)]
    lm = reasonflow.connect(engine.base_url, model, temperature=0.0)
    assert lm.prompt_format == ("compact" if model else "json")
    program = reasonflow.program("game24.tot", breadth=2)
    with reasonflow.track_usage() as usage, dspy.context(lm=lm, adapter=StructuredAdapter()):
        preds = [program(question=q) for q in puzzles]
    checked = 0
    for question, pred in zip(puzzles, preds):
        for steps, step, attrs in proposals(pred.trace):
            assert step in actions(question, steps), (question, steps, step)
            assert attrs.get("reason") != "outside the action space"
            checked += 1
    assert checked >= 16
    if model:  # the compact format: short prompts
        assert usage.prompt_tokens / usage.calls < 150


def test_every_gsm8k_statement_proposal_matches_its_states_grammar(lm, data_dir):
    question = load("gsm8k", data_dir=data_dir, limit=1)[0].question
    program = reasonflow.program("gsm8k.tot", steps="program", breadth=2, depth=3, proposals=3)
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        pred = program(question=question)
    found = proposals(pred.trace)
    assert len(found) >= 6
    for steps, step, _ in found:
        assert re.match(statement_pattern(question, steps), step), (steps, step)


@pytest.mark.parametrize("model", [None, DEFAULT_ADAPTER])
def test_every_bounded_program_matches_the_program_grammar_and_none_is_refused(engine, data_dir, model):
    """xgrammar accepts the whole-program pattern and vLLM enforces it, for the base model and the adapter."""
    from programs.gsm8k import bounded

    lm = reasonflow.connect(engine.base_url, model, temperature=0.0)
    program = reasonflow.program("gsm8k.bpot@4")
    for ex in load("gsm8k", data_dir=data_dir, limit=2):
        with dspy.context(lm=lm, adapter=StructuredAdapter()):
            pred = program(question=ex.question)
        assert len(pred.programs) == 4, getattr(pred, "error", None)
        assert all(bounded(ex.question, p) for p in pred.programs), pred.programs
        assert not any(e and e.startswith("OutOfGrammar") for e in pred.errors), pred.errors
