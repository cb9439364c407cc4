"""The Game of 24 recipe: exact labels, train rows only, prompts identical to the search's."""

from __future__ import annotations

import json
from collections import Counter
from fractions import Fraction

import dspy
import pytest

import reasonflow
from reasonflow import StructuredAdapter
from reasonflow.adapter import CompactAdapter
from reasonflow.checking.game24 import good_moves, legal_moves, reachable, start_state
from reasonflow.data import load
from reasonflow.errors import ConfigError, DatasetError
from reasonflow.finetune import Recipe, render
from reasonflow.finetune.game24 import TRAIN_ROWS, exact_examples, search_examples
from reasonflow.finetune.recipe import collect_gold
from reasonflow.registry import get_program
from reasonflow.testing import ScriptedLM
from tests.fakeserver import FakeServer, completion


def state_of(numbers: str):
    return tuple(sorted(Fraction(x) for x in numbers.split()))


def test_every_label_is_exact(data_dir):
    examples, counts = exact_examples(60, data_dir=data_dir)
    assert {"g24-propose", "g24-value"} == {ex.format for ex in examples}
    assert counts["g24-value:sure"] and counts["g24-value:impossible"]
    for ex in examples:
        state = state_of(ex.inputs["numbers"])
        if ex.format == "g24-value":
            assert ex.outputs["verdict"] == ("sure" if reachable(state) else "impossible")
            assert len(state) in (2, 3)
            trials = ex.outputs["trials"].split(", ") if ex.outputs["trials"] else []
            assert (len(state) == 2) == bool(trials)  # trials with two numbers left, none with three
            assert all(dict(legal_moves(state)).get(t) for t in trials)  # each an exact legal move
            if trials:  # the trials end in 24 exactly when the verdict is sure
                assert trials[-1].endswith("= 24") == (ex.outputs["verdict"] == "sure")
        else:
            assert ex.outputs["next_step"] in good_moves(state)
            assert reachable(dict(legal_moves(state))[ex.outputs["next_step"]])


def test_every_reachable_deeper_state_is_taught_with_every_good_move(data_dir):
    from reasonflow.finetune.game24 import PROPOSE_FIRST_MOVES

    puzzles = load("game24", split="train", data_dir=data_dir, limit=40)
    examples, _ = exact_examples(40, data_dir=data_dir)
    taught = {(state_of(ex.inputs["numbers"]), ex.outputs["next_step"]) for ex in examples if ex.format == "g24-propose"}
    wanted = set()
    for puzzle in puzzles:
        depth1 = {after for _, after in legal_moves(start_state(puzzle.question))}
        for state in depth1 | {after for s in depth1 for _, after in legal_moves(s)}:
            wanted |= {(state, move) for move in good_moves(state)} if reachable(state) else set()
    assert wanted and wanted <= taught
    roots = Counter(state for state, _ in taught if len(state) == 4)
    assert roots and max(roots.values()) <= PROPOSE_FIRST_MOVES


def test_value_classes_are_balanced_per_depth_after_merging_identical_states(data_dir):
    from reasonflow.finetune.game24 import VALUE_PER_CLASS

    puzzles = 60
    examples, counts = exact_examples(puzzles, data_dir=data_dir)
    values = [ex for ex in examples if ex.format == "g24-value"]
    per_class = Counter((len(ex.inputs["numbers"].split()), ex.outputs["verdict"]) for ex in values)
    assert per_class == {(4 - depth, v): VALUE_PER_CLASS[depth] * puzzles for depth in (1, 2) for v in ("sure", "impossible")}
    # few distinct reachable two-number states: each is repeated to fill its share, none is invented
    distinct_sure = {ex.inputs["numbers"] for ex in values if ex.outputs["verdict"] == "sure"
                     and len(ex.inputs["numbers"].split()) == 2}
    assert len(distinct_sure) == counts["depth2:sure:distinct"] < VALUE_PER_CLASS[2] * puzzles
    dead = [ex.inputs["numbers"] for ex in values if ex.outputs["verdict"] == "impossible"]
    assert len(set(dead)) == len(dead)  # plenty of dead states: drawn without repeats
    ids = {ex.id for ex in load("game24", split="train", data_dir=data_dir, limit=puzzles)}
    assert {ex.id for ex in values} <= ids
    assert exact_examples(puzzles, data_dir=data_dir)[0] == examples  # seeded


def test_value_trials_try_each_move_until_one_makes_24_and_fit_the_signatures_bound(data_dir):
    from programs.game24 import TRIALS_MAX_CHARS
    from reasonflow.checking.game24 import value_trials

    assert value_trials(state_of("3 8")) == "8 + 3 = 11, 8 - 3 = 5, 8 * 3 = 24"
    assert value_trials(state_of("5 7")) == "7 + 5 = 12, 7 - 5 = 2, 7 * 5 = 35, 7 / 5 = 7/5"  # never 5 / 7
    assert value_trials(state_of("5 5")) == "5 + 5 = 10, 5 - 5 = 0, 5 * 5 = 25, 5 / 5 = 1"
    assert value_trials(state_of("1 2 3")) == ""
    for puzzle in load("game24", data_dir=data_dir):  # every two-number state any puzzle reaches
        for s1 in {after for _, after in legal_moves(start_state(puzzle.question))}:
            for _, s2 in legal_moves(s1):
                trials = value_trials(s2)
                assert len(trials) <= TRIALS_MAX_CHARS
                assert trials.endswith("= 24") == reachable(s2)


def test_propose_and_value_gold_keep_one_half_of_the_exact_examples_each(data_dir):
    both, _ = exact_examples(30, data_dir=data_dir)
    halves = {}
    for fmt in ("propose", "value"):
        halves[fmt], report = collect_gold(Recipe(task="game24", gold=((fmt, 30),), data_dir=str(data_dir)))
        assert {ex.format for ex in halves[fmt]} == {f"g24-{fmt}"} and list(report) == [fmt]
    assert halves["propose"] + halves["value"] == both  # the same examples, split by part
    with pytest.raises(ConfigError, match="parts"):
        exact_examples(5, data_dir=data_dir, parts=("values",))


def test_no_benchmark_puzzle_reaches_the_default_recipes_data(data_dir):
    recipe = Recipe(task="game24", gold=(("exact", TRAIN_ROWS),), data_dir=str(data_dir))
    examples, _ = collect_gold(recipe)
    benchmark = {state_of(ex.question) for ex in load("game24", data_dir=data_dir, offset=900, limit=100)}
    assert len(benchmark) == 100
    assert max(int(ex.id.rsplit(":", 1)[1]) for ex in examples) < TRAIN_ROWS
    seen_puzzles = {state_of(ex.question) for ex in examples}
    four_number_inputs = {state_of(ex.inputs["numbers"]) for ex in examples if len(ex.inputs["numbers"].split()) == 4}
    assert not (seen_puzzles | four_number_inputs) & benchmark


def test_the_train_split_is_rows_1_to_900_and_keeps_the_files_numbering(data_dir):
    train = load("game24", split="train", data_dir=data_dir)
    test = load("game24", data_dir=data_dir)
    assert len(train) == TRAIN_ROWS < len(test)
    assert [ex.id for ex in train[:2]] == ["game24:train:0", "game24:train:1"]
    assert [ex.question for ex in train] == [ex.question for ex in test[:TRAIN_ROWS]]
    shuffled = load("game24", split="train", data_dir=data_dir, seed=0)
    assert max(int(ex.id.rsplit(":", 1)[1]) for ex in shuffled) < TRAIN_ROWS  # a seeded shuffle stays in train
    assert load("game24", split="train", data_dir=data_dir, offset=TRAIN_ROWS) == []


def test_the_recipe_refuses_benchmark_rows(data_dir):
    with pytest.raises(ConfigError, match="benchmark rows"):
        exact_examples(200, offset=800, data_dir=data_dir)
    with pytest.raises(ConfigError, match="game24 program"):
        Recipe(task="game24", gold=(), search=(("gsm8k.pot", 10),))
    with pytest.raises(ConfigError, match="FORMAT"):
        Recipe(task="game24", gold=(("pot", 10),))


@pytest.mark.parametrize("fmt", ["g24-propose", "g24-value"])
def test_compact_rendering_is_exactly_what_the_search_sends(data_dir, fmt):
    examples, _ = exact_examples(5, data_dir=data_dir)
    size = 4 if fmt == "g24-propose" else 3  # the root's propose call; a first-move state's value call
    example = next(ex for ex in examples if ex.format == fmt and len(ex.inputs["numbers"].split()) == size)
    target = state_of(example.inputs["numbers"])
    to_target = [m for m, after in legal_moves(start_state(example.question)) if after == target]

    def script(call):
        schema = (call.kwargs.get("response_format") or {}).get("json_schema", {}).get("schema", {})
        if "next_step" in schema.get("properties", {}):
            enum = schema["properties"]["next_step"]["enum"]
            return {"next_step": to_target[0] if to_target and to_target[0] in enum else enum[0]}
        return {"verdict": "sure"}

    lm = ScriptedLM(script)
    lm.prompt_format = "compact"
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        get_program("game24.tot", proposals=1)(question=example.question)
    rendered = render(example, CompactAdapter())
    assert rendered["prompt"] in [c.messages for c in lm.calls]
    assert rendered["completion"][0]["content"] == json.dumps(example.outputs, separators=(",", ":"))
    assert sum(len(m["content"]) for m in rendered["prompt"]) < 250  # vs ~1,200 characters of DSPy's prompt


def test_connect_reads_the_prompt_format_from_the_served_models_manifest(tmp_path):
    merged = tmp_path / "game24-tot"
    merged.mkdir()
    (merged / "reasonflow-merged.json").write_text(json.dumps({"adapter_manifest": {"prompt_format": "compact"}}))
    models = [{"id": "base", "object": "model", "root": str(tmp_path / "nowhere")},
              {"id": "game24-tot", "object": "model", "root": str(merged)}]
    with FakeServer([completion('{"trials":"8 * 3 = 24","verdict":"sure"}')], models=models) as server:
        assert reasonflow.connect(server.base_url, "game24-tot").prompt_format == "compact"
        assert reasonflow.connect(server.base_url, "base").prompt_format == "json"
        lm = reasonflow.connect(server.base_url, "game24-tot")
        with dspy.context(lm=lm, adapter=StructuredAdapter()):
            dspy.Predict(get_program("game24.tot").value.signature)(numbers="3 8")
        sent = server.bodies[-1]["messages"]
    assert sent[-1] == {"role": "user", "content": "numbers: 3 8"} and "[[ ##" not in sent[0]["content"]


def test_round_two_keeps_only_the_moves_on_solved_paths(data_dir, tmp_path):
    from reasonflow.bench import run_bench

    lm = ScriptedLM(lambda call: pytest.fail("no LM call expected"))
    run_bench(["game24.tot:random"], "game24", limit=30, data_dir=data_dir, lm=lm, out_dir=tmp_path,
              html_traces=0, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    solved = Counter(r["question"] for r in rows if r["correct"])
    examples, counts = search_examples(tmp_path)
    assert solved and counts["solved"] == len(solved) and len(examples) == 3 * len(solved)
    for ex in examples:
        assert ex.question in solved and ex.outputs["next_step"] in good_moves(state_of(ex.inputs["numbers"]))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "questions.jsonl").write_text(json.dumps({**rows[0], "id": "game24:test:950"}) + "\n")
    with pytest.raises(DatasetError, match="benchmark row"):
        search_examples(bad)
