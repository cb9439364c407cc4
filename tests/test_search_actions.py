"""Action spaces, baseline policies and verdict-probability values, offline with a scripted LM."""

from __future__ import annotations

import math
import random
import re
from fractions import Fraction

import dspy
import pytest

from programs.game24 import GAME24, actions, final_answer, numbers_left
from programs.gsm8k import GSM8K_PROGRAM, statement_pattern
from reasonflow import StructuredAdapter
from reasonflow.checking import game24_check
from reasonflow.checking.game24 import good_moves, legal_moves, reachable, start_state
from reasonflow.data import load
from reasonflow.errors import ConfigError
from reasonflow.registry import get_program, parse_name
from reasonflow.search.task import Task, verdict_probabilities
from reasonflow.strategies import DFS, MCTS, TreeOfThought
from reasonflow.testing import ScriptedLM


def step_enum(call) -> list[str] | None:
    fmt = call.kwargs.get("response_format") or {}
    prop = fmt.get("json_schema", {}).get("schema", {}).get("properties", {}).get("next_step", {})
    return prop.get("enum")


def game24_script(choose=lambda enum, rng: rng.choice(enum), verdict="likely", seed=0):
    rng = random.Random(seed)

    def script(call):
        enum = step_enum(call)
        if enum is not None:
            return [{"next_step": choose(enum, rng)} for _ in range(call.n)]
        return {"trials": "", "verdict": verdict}

    return script


def run(program, lm, question):
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        return program(question=question)


def test_every_propose_request_is_one_n_request_guided_to_exactly_the_states_legal_moves():
    lm = ScriptedLM(game24_script())
    run(get_program("game24.tot"), lm, "4 9 10 13")
    proposes = [c for c in lm.calls if step_enum(c) is not None]
    assert proposes and all(c.n == 8 for c in proposes)
    for call in proposes:
        state = tuple(sorted(Fraction(x) for x in call.inputs["numbers"].split()))
        assert step_enum(call) == [text for text, _ in legal_moves(state)]


def test_a_proposal_outside_the_action_space_never_becomes_a_state():
    def script(call):  # a server that ignores the schema: one illegal and one legal proposal
        enum = step_enum(call)
        return [{"next_step": "9 + 9 = 18"}, {"next_step": enum[0]}] if enum else {"trials": "", "verdict": "sure"}

    pred = run(TreeOfThought(GAME24, breadth=2, depth=3, proposals=2), ScriptedLM(script), "4 9 10 13")
    nodes = [d for _, d in pred.trace.graph.nodes(data=True)]
    illegal = [d for d in nodes if d["text"] == "9 + 9 = 18"]
    assert illegal and all(d["status"] == "pruned" and d["reason"] == "outside the action space" for d in illegal)
    graph = pred.trace.graph
    root = next(n for n in graph if graph.in_degree(n) == 0)
    kept = [graph.nodes[n]["text"] for n in graph.successors(root) if graph.nodes[n]["status"] != "pruned"]
    assert kept and all(numbers_left("4 9 10 13", [t]) is not None for t in kept)


def test_an_open_ended_step_pattern_goes_out_as_a_json_schema_pattern_per_state():
    question = "Natalia sold clips to 48 of her friends in April, and half as many in May. How many in all?"
    seen = []

    def script(call):
        fmt = call.kwargs.get("response_format") or {}
        prop = fmt.get("json_schema", {}).get("schema", {}).get("properties", {}).get("next_step", {})
        if "pattern" in prop:
            seen.append((call.inputs["steps"], prop["pattern"]))
            return {"next_step": "n1 = 48 / 2" if not call.inputs["steps"] else "answer = 48 + n1"}
        return {"verdict": "sure"}

    pred = run(get_program("gsm8k.tot", steps="program", breadth=1, proposals=1), ScriptedLM(script), question)
    assert pred.answer == "72"
    assert seen[0][1] == statement_pattern(question, []) and seen[1][1] == statement_pattern(question, ["n1 = 48 / 2"])
    second = seen[1][1]
    assert re.match(second, "answer = 48 + n1") and re.match(second, "n2 = n1 * 2")
    for bad in ("n2 = n2 + 48", "n2 = 49 + n1", "n3 = 48", "n2 = 48 + n1 * 2 - 7 + 2", "n2 = __import__('os')"):
        assert not re.match(second, bad), bad


@pytest.mark.parametrize("strategy", [TreeOfThought, DFS, MCTS])
def test_baseline_policies_make_no_lm_call_and_the_same_seed_gives_the_same_search(strategy):
    lm = ScriptedLM(lambda call: pytest.fail("a baseline called the LM"))
    options = {"depth": 3, "proposals": 4} | ({"iterations": 6} if strategy is MCTS else {})

    def texts(policy, seed):
        pred = strategy(GAME24, policy=policy, seed=seed, **options)(question="4 9 10 13")
        return [d["text"] for _, d in pred.trace.graph.nodes(data=True)]

    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        for policy in ("random", "exact"):
            assert texts(policy, 0) == texts(policy, 0) and len(texts(policy, 0)) > 1
    assert not lm.calls


def test_the_random_seed_changes_the_search():
    texts = {seed: [d["text"] for _, d in get_program("game24.tot:random", seed=seed)(question="4 9 10 13")
                    .trace.graph.nodes(data=True)] for seed in (0, 1)}
    assert texts[0] != texts[1]


def test_the_exact_policy_solves_every_puzzle_and_the_random_one_fewer(data_dir):
    puzzles = [ex.question for ex in load("game24", data_dir=data_dir, offset=900, limit=40)]
    exact = [get_program("game24.tot:exact")(question=q) for q in puzzles]
    random_ = [get_program("game24.tot:random")(question=q) for q in puzzles]
    assert all(game24_check(p.answer, q) for p, q in zip(exact, puzzles))
    assert sum(p.answer is not None for p in random_) < len(puzzles) / 2


def test_baseline_policies_are_refused_without_an_action_space():
    with pytest.raises(ConfigError, match="action space"):
        TreeOfThought(Task("t"), policy="random")
    with pytest.raises(ConfigError, match="exact_value"):
        TreeOfThought(Task("t", actions=lambda q, steps: ["a", "b"]), policy="exact")
    with pytest.raises(ConfigError, match="action space"):
        TreeOfThought(GSM8K_PROGRAM, policy="random")  # a grammar is not a list of moves to draw from
    with pytest.raises(ConfigError, match="policy"):
        TreeOfThought(GAME24, policy="greedy")


def test_policy_names_parse_with_and_without_a_size():
    assert parse_name("game24.tot:random") == ("game24.tot", {"policy": "random"})
    assert parse_name("game24.tot@10:exact") == ("game24.tot", {"breadth": 10, "policy": "exact"})
    for bad in ("game24.cot:random", "game24.tot:oracle"):
        with pytest.raises(ConfigError):
            parse_name(bad)


def test_legal_moves_are_exact_and_the_solver_agrees_with_the_checker():
    moves = dict(legal_moves(start_state("3 3 8 8")))
    assert moves["8 / 3 = 8/3"] == (Fraction(8, 3), 3, 8)  # fractions stay exact
    assert "3 - 8 = -5" not in moves and "8 - 8 = 0" in moves
    state = start_state("3 3 8 8")  # 8 / (3 - 8/3) = 24
    steps = []
    while len(state) > 1:
        steps.append(good_moves(state)[0])
        state = moves_after = dict(legal_moves(state))[steps[-1]]
    assert moves_after == (24,) and game24_check(final_answer("3 3 8 8", steps), "3 3 8 8")
    assert not reachable(start_state("1 1 1 1")) and actions("1 1 1 1", ["1 + 1 = 2", "1 + 1 = 2", "2 + 2 = 4"]) == []


def openai_tokens(word: str, probabilities: dict[str, float]):
    """A verdict completion as tokens with their top alternatives, as vLLM reports them."""
    tops = [(w, math.log(p)) for w, p in probabilities.items()]
    return [('{"verdict":"', [('{"verdict":"', 0.0)]), (word, tops), ('"}', [('"}', 0.0)])]


def test_verdict_probabilities_read_the_alternatives_where_the_value_starts():
    tokens = {"content": [{"token": t, "logprob": alts[0][1], "top_logprobs": [{"token": a, "logprob": lp}
                                                                               for a, lp in alts]}
                          for t, alts in openai_tokens("likely", {"l": 0.5, "s": 0.3, "imp": 0.1, "x": 0.1})]}
    probs = verdict_probabilities(tokens)
    assert probs == pytest.approx({"sure": 0.3 / 0.9, "likely": 0.5 / 0.9, "impossible": 0.1 / 0.9})
    assert verdict_probabilities({"content": [{"token": "{}", "logprob": 0.0, "top_logprobs": []}]}) is None
    # DSPy's JSON prompt: the opening quote comes as a token of its own, the class starts one later
    split = [{"token": t, "logprob": 0.0, "top_logprobs": [{"token": a, "logprob": math.log(p)} for a, p in alts]}
             for t, alts in (('{"verdict":', [('{"verdict":', 1.0)]), ('"', [('"', 1.0)]),
                             ("s", [("s", 0.6), ("imp", 0.3), ("i", 0.1)]), ('ure"}', [('ure"}', 1.0)]))]
    assert verdict_probabilities({"content": split}) == pytest.approx({"sure": 0.6, "likely": 0.0, "impossible": 0.4})


def test_logprob_values_rank_states_by_the_models_probability_not_by_the_verdict_sampled():
    def logprobs(call, text):  # every verdict sampled is "likely"; p(sure) is high for reachable states
        state = tuple(sorted(Fraction(x) for x in call.inputs["numbers"].split()))
        p = 0.8 if reachable(state) else 0.1
        return openai_tokens("likely", {"s": p, "imp": 1 - p - 0.05, "l": 0.05})

    def half_good(enum, rng):  # samples half from the good moves, half from the others
        state = start_state("4 9 10 13") if len(enum) == 30 else None
        good_here = [m for m in enum if state is not None and m in good_moves(state)]
        return rng.choice(good_here if good_here and rng.random() < 0.5 else enum)

    lm = ScriptedLM(game24_script(choose=half_good), logprobs=logprobs)
    pred = run(get_program("game24.tot"), lm, "4 9 10 13")
    graph = pred.trace.graph
    root = next(n for n in graph if graph.in_degree(n) == 0)
    scored = [(graph.nodes[n]["text"], graph.nodes[n]["score"]) for n in graph.successors(root)
              if graph.nodes[n].get("score") is not None]
    good = set(good_moves(start_state("4 9 10 13")))
    assert any(t in good for t, _ in scored) and any(t not in good for t, _ in scored)
    assert min(s for t, s in scored if t in good) > max(s for t, s in scored if t not in good)
    assert all(c.kwargs.get("logprobs") for c in lm.calls if step_enum(c) is None)


def test_verdict_logprobs_come_back_through_the_http_client():
    import asyncio

    import reasonflow
    from tests.fakeserver import FakeServer, completion

    def with_logprobs(body):
        reply = completion('{"trials":"","verdict":"likely"}')
        top = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in (("likely", 0.5), ("sure", 0.4), ("imp", 0.1))]
        reply["choices"][0]["logprobs"] = {"content": [
            {"token": '{"trials":"","verdict":"', "logprob": 0.0, "bytes": None, "top_logprobs": []},
            {"token": "likely", "logprob": math.log(0.5), "bytes": None, "top_logprobs": top},
            {"token": '"}', "logprob": 0.0, "bytes": None, "top_logprobs": []}]}
        return reply

    with FakeServer([with_logprobs]) as server:
        lm = reasonflow.connect(server.base_url)
        with dspy.context(lm=lm, adapter=StructuredAdapter()):
            value, _ = asyncio.run(get_program("game24.tot").lm_value("4 6 8 9", []))
        sent = server.bodies[-1]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 5
    assert value == pytest.approx(0.4 + 0.5 * 0.5)  # p(sure) + p(likely) / 2, not the sampled "likely"
