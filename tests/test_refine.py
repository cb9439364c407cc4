"""SelfRefine, the strategy added as one file and one import line: it drafts, critiques and revises, and
every caller (names with @N, the server's options, the compile grid) picks it up from its own facts."""

from __future__ import annotations

import pytest

import reasonflow
from reasonflow import registry
from reasonflow.checking import numeric_equivalent
from reasonflow.search import Task
from reasonflow.serve.schemas import SolveOptions, allowed_options
from reasonflow.strategies import SelfRefine
from reasonflow.testing import ScriptedLM

TASK = Task("t", equivalent=numeric_equivalent)


def script(drafts: list, verdicts: list[bool]):
    """Answers: the solve/refine calls take ``drafts`` in turn, the critiques ``verdicts``."""
    drafts, verdicts = list(drafts), list(verdicts)

    def respond(call):
        if "feedback" in call.inputs:  # a revision
            return drafts.pop(0)
        if "draft" in call.inputs:  # a critique
            return {"feedback": "recheck the sum", "correct": verdicts.pop(0)}
        return drafts.pop(0)  # the first draft

    return respond


def run(program, lm):
    with reasonflow.session(lm):
        return program(question="2 + 5 + 2?")


def test_a_revision_replaces_the_draft_until_the_critique_says_correct():
    lm = ScriptedLM(script([{"reasoning": "2+5", "answer": "7"}, {"reasoning": "2+5+2", "answer": "9"}],
                           [False, True]))
    pred = run(SelfRefine(TASK, rounds=3), lm)
    assert pred.answer == "9" and pred.reasoning == "2+5+2" and pred.result.error is None
    assert len(lm.calls) == 4  # draft, critique, revision, critique (then stop: correct)
    graph = pred.trace.graph
    chain = [(graph.edges[u, v]["action"], graph.nodes[v]["status"]) for u, v in graph.edges]
    assert chain == [("draft", "terminal"), ("revision 1", "answer")]  # question -> draft -> revision, a chain
    draft = next(v for u, v in graph.edges if graph.edges[u, v]["action"] == "draft")
    assert graph.nodes[draft]["feedback"] == "recheck the sum" and graph.nodes[draft]["answer"] == "7"


def test_rounds_bound_the_revisions_and_an_unusable_revision_keeps_the_draft():
    lm = ScriptedLM(script([{"reasoning": "a", "answer": "7"}, {"reasoning": "b", "answer": "nan"}], [False]))
    pred = run(SelfRefine(TASK, rounds=5), lm)
    assert pred.answer == "7" and len(lm.calls) == 3  # the unusable revision ends the loop
    pruned = [d for _, d in pred.trace.graph.nodes(data=True) if d["status"] == "pruned"]
    assert pruned and "not a finite number" in pruned[0]["reason"]
    once = ScriptedLM(script([{"reasoning": "a", "answer": "7"}, {"reasoning": "b", "answer": "8"}], [False]))
    assert run(SelfRefine(TASK, rounds=1), once).answer == "8" and len(once.calls) == 3


def test_an_unusable_first_draft_is_a_typed_no_answer():
    pred = run(SelfRefine(TASK), ScriptedLM(script([{"reasoning": "a", "answer": "inf"}], [])))
    assert pred.answer is None and isinstance(pred.error, reasonflow.NoAnswerError)


@pytest.fixture
def refine_program():
    registry.register("t.refine", kind="number")(lambda **options: SelfRefine(TASK, **options))
    yield
    registry.PROGRAMS.pop("t.refine")


def test_its_facts_reach_names_server_options_and_the_compile_grid(refine_program):
    assert reasonflow.program("t.refine@4").rounds == 4  # size_option
    assert allowed_options("refine") >= {"rounds", "temperature"}
    assert SolveOptions.model_validate({"rounds": 3}).rounds == 3
    with pytest.raises(Exception, match="rounds"):
        SolveOptions.model_validate({"rounds": 0})
    assert registry.STRATEGIES["refine"].grid == ({"rounds": 1}, {"rounds": 2})
