"""Fine-tuning data: gold solutions to PoT programs and CoT text, search-trace harvesting, rendering
identical to inference. Offline (no engine); the training itself is in test_finetune_train.py."""

from __future__ import annotations

import json

import dspy
import pytest

from reasonflow import data
from reasonflow.adapter import StructuredAdapter
from reasonflow.errors import ConfigError, DatasetError
from reasonflow.finetune import FORMATS, Recipe, SFTExample, gold_examples, render, search_examples
from reasonflow.finetune.data import solution_to_program, solution_to_reasoning
from reasonflow.registry import get_program
from reasonflow.sandbox import run_code
from reasonflow.testing import ScriptedLM
from reasonflow.trace import Trace

NATALIA_Q = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
             "How many clips did Natalia sell altogether in April and May?")
NATALIA_S = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
             "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")


def test_calculator_notes_become_python_statements_that_reuse_earlier_results():
    assert solution_to_program(NATALIA_Q, NATALIA_S, "72") == ("n1 = 48/2; n2 = 48+n1; answer = n2", "ok")
    code, why = solution_to_program(NATALIA_Q, NATALIA_S, "72", commented=True)
    assert why == "ok"
    assert code.splitlines() == ["# Natalia sold n1 clips in May.", "n1 = 48/2",
                                 "# Natalia sold n2 clips altogether in April and May.", "n2 = 48+n1",
                                 "answer = n2"]
    assert run_code(code).answer == run_code(solution_to_program(NATALIA_Q, NATALIA_S, "72")[0]).answer == 72


def test_a_literal_that_is_also_in_the_question_stays_a_literal():
    q = "Tom has 24 apples and buys 48/2 more. How many?"
    s = "He buys 48/2 = <<48/2=24>>24.\nHe has 24+24 = <<24+24=48>>48.\n#### 48"
    code, why = solution_to_program(q, s, "48")
    assert why == "ok" and "n2 = 24+24;" in code


@pytest.mark.parametrize("solution, gold, reason", [
    ("It is 2+2 = <<2+2=5>>5.\n#### 5", "5", "note_mismatch"),
    ("It is <<__import__('os')=0>>0.\n#### 0", "0", "note_not_arithmetic"),
    ("It is <<2**100000=1>>1.\n#### 1", "1", "note_not_arithmetic"),
    ("It is <<3/0=1>>1.\n#### 1", "1", "note_not_arithmetic"),
    ("It is 2+2 = <<2+2=4>>4, so the answer is 5.\n#### 5", "5", "no_note_gives_gold"),
])
def test_solutions_that_do_not_convert_are_dropped_with_a_reason(solution, gold, reason):
    assert solution_to_program("q", solution, gold) == (None, reason)


def test_results_with_thousands_separators_and_x_for_times_convert():
    code, why = solution_to_program("A box holds 250. How many in 4 boxes?",
                                    "4 x 250 = <<4*250=1,000>>1,000 in all.\n#### 1,000", "1000")
    assert (code, why) == ("n1 = 4*250; answer = n1", "ok")


def test_cot_variant_is_the_solution_without_notes():
    assert solution_to_reasoning(NATALIA_S) == ("Natalia sold 48/2 = 24 clips in May.\n"
                                                "Natalia sold 48+24 = 72 clips altogether in April and May.")


def test_converted_train_programs_run_in_the_sandbox_to_the_gold_answer(data_dir):
    examples = data.load("gsm8k", split="train", data_dir=data_dir, limit=40)
    kept, counts = gold_examples(examples, ["pot"])
    assert counts.get("pot:ok", 0) == len(kept) >= 25  # most solutions convert
    assert sum(counts.values()) == 40  # every row is accounted for
    for ex in kept[:8]:
        assert float(run_code(ex.outputs["code"]).answer) == pytest.approx(float(data.load(
            "gsm8k", split="train", data_dir=data_dir, offset=int(ex.id.rsplit(":", 1)[1]), limit=1)[0].answer))


def test_gold_examples_refuse_examples_without_a_solution(data_dir):
    svamp = data.load("svamp", data_dir=data_dir, limit=1)
    with pytest.raises(DatasetError, match="no worked solution"):
        gold_examples(svamp, ["pot"])
    with pytest.raises(ConfigError, match="unknown format"):
        gold_examples([], ["tot"])


@pytest.mark.parametrize("fmt", ["cot", "pot"])  # game24 formats: tests/test_finetune_game24.py
def test_render_prompt_is_exactly_what_the_program_sends_at_inference(fmt):
    outputs = {"code": "n1 = 48/2; answer = 48+n1"} if fmt == "pot" else {"reasoning": "48/2 = 24", "answer": "72"}
    example = SFTExample("gsm8k:train:0", "gold", fmt, NATALIA_Q, outputs)
    rendered = render(example)
    lm = ScriptedLM(lambda call: outputs)
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        get_program(FORMATS[fmt])(question=NATALIA_Q)
    assert lm.calls[0].messages == rendered["prompt"]
    # the completion is the compact JSON guided decoding produces, and the adapter parses it back
    content = rendered["completion"][0]["content"]
    assert " " not in content.split('"')[0] and content.startswith('{"')
    signature = get_program(FORMATS[fmt]).named_predictors()[0][1].signature
    parsed = StructuredAdapter().parse(signature, content)
    assert {k: str(v) for k, v in parsed.items()} == {k: str(v) for k, v in outputs.items()} | (
        {"answer": "72.0"} if fmt == "cot" else {})


def _bench_dir(tmp_path, samples):
    trace = Trace(program="gsm8k.pot@4", strategy="pot", question="q?")
    root = trace.add_node(text="q?", status="expanded")
    for text, answer, extra in samples:
        trace.add_node(text=text, parent=root, status="terminal", answer=answer, **extra)
    trace.save(tmp_path / "traces" / "t.json")
    row = {"program": "gsm8k.pot@4", "dataset": "gsm8k", "id": "gsm8k:train:7", "question": "q?", "gold": "12",
           "trace": "traces/t.json"}
    (tmp_path / "questions.jsonl").write_text(json.dumps(row) + "\n")
    return tmp_path


def test_search_keeps_only_correct_distinct_samples(tmp_path):
    bench = _bench_dir(tmp_path, [("answer = 3*4", "12", {}), ("answer = 3 * 4", "12.0", {}),
                                  ("answer  =  3*4", "12", {}), ("answer = 3+4", "7", {}),
                                  ("answer = 1/0", "", {"reason": "SandboxCodeError"})])
    kept, counts = search_examples(bench, "pot")
    assert [k.outputs["code"] for k in kept] == ["answer = 3*4", "answer = 3 * 4"]  # whitespace-duplicate dropped
    assert all(k.source == "search:gsm8k.pot@4" and k.id == "gsm8k:train:7" for k in kept)
    assert counts["samples"] == 4 and counts["kept"] == 2 and counts["questions_with_a_correct_sample"] == 1


def test_search_without_a_bench_run_is_a_typed_error(tmp_path):
    with pytest.raises(DatasetError, match="run the bench"):
        search_examples(tmp_path, "pot")


def test_recipe_validates_its_sources():
    with pytest.raises(ConfigError):
        Recipe(gold=(("tot", 10),))
    with pytest.raises(ConfigError):
        Recipe(gold=(), search=())
    with pytest.raises(ConfigError):
        Recipe(search=(("gsm8k.pot@8", 0),))
    with pytest.raises(ConfigError):
        Recipe(gold_offset=-1)


def test_gold_offset_takes_new_train_rows(data_dir):
    from reasonflow.finetune.recipe import collect_gold

    first, _ = collect_gold(Recipe(gold=(("pot", 8),), data_dir=str(data_dir)))
    later, report = collect_gold(Recipe(gold=(("pot", 8),), gold_offset=16, data_dir=str(data_dir)))
    assert len(first) == len(later) == 8 and report["pot"]["offset"] == 16
    assert not {ex.id for ex in first} & {ex.id for ex in later}  # 8 of the first 16 rows vs rows 16+


def test_search_source_runs_the_program_on_train_questions_and_keeps_correct_programs(data_dir, tmp_path):
    from reasonflow.finetune.recipe import collect_search

    golds = {ex.question: ex.answer for ex in data.load("gsm8k", split="train", data_dir=data_dir, limit=3, seed=0)}

    def script(call):  # two programs per question: one computes the gold answer, one is off by one
        gold = golds[call.inputs["question"]]
        return [{"code": f"x = {gold}\nanswer = x"}, {"code": f"answer = {gold} + 1"}]

    recipe = Recipe(gold=(), search=(("gsm8k.pot@2", 3),), data_dir=str(data_dir))
    kept, report = collect_search(recipe, tmp_path, lm=ScriptedLM(script), progress=False)
    assert sorted(k.outputs["code"] for k in kept) == sorted(f"x = {g}\nanswer = x" for g in golds.values())
    assert {k.source for k in kept} == {"search:gsm8k.pot@2"} and {k.format for k in kept} == {"pot"}
    assert report["gsm8k.pot@2"]["harvest"]["samples"] == 6 and report["gsm8k.pot@2"]["accuracy"] == 1.0  # ties go to the first program
    assert (tmp_path / "search" / "gsm8k.pot@2" / "questions.jsonl").is_file()  # resumable bench run
