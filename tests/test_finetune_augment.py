"""Number-perturbation augmentation: every kept variant is a consistent (question, program, answer)."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from reasonflow import data
from reasonflow.checking import numbers_equal
from reasonflow.errors import ConfigError
from reasonflow.finetune import gold_examples
from reasonflow.finetune.augment import UNIT_CONSTANTS, augment, check_variant, draw, perturbable, run_program
from reasonflow.finetune.recipe import Recipe, collect_gold


@pytest.fixture(scope="module")
def gold(data_dir):
    kept, _ = gold_examples(data.load("gsm8k", split="train", data_dir=data_dir, seed=0, limit=160), ["pot"])
    return kept


@pytest.fixture(scope="module")
def augmented(gold):
    return augment(gold, 3, seed=0)


def _literals(text: str) -> list[Fraction]:
    return [Fraction(m.replace(",", "")) for m in re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?", text)]


def test_every_kept_variants_program_reproduces_its_answer_in_the_sandbox(augmented):
    from reasonflow.sandbox import run_code

    variants, counts = augmented
    assert counts["kept"] == len(variants) > 100  # about 3 of 4 examples give variants
    for ex in variants:
        code = "\n".join(s.strip() for s in ex.outputs["code"].split(";"))
        assert numbers_equal(run_code(code).answer, ex.answer), (ex.id, ex.outputs, ex.answer)


def test_a_variant_changes_the_questions_numbers_and_the_programs_literals_together(gold, augmented):
    by_id = {ex.id: ex for ex in gold}
    for ex in augmented[0]:
        original = by_id[ex.id.split("~")[0]]
        assert ex.question != original.question and ex.source == "gold:augment"
        question_numbers = set(_literals(ex.question))
        fixed = set(_literals(original.outputs["code"])) - set(perturbable(original.question, original.outputs["code"]))
        # every literal of the variant's program is a number of its question or one the original kept fixed
        assert set(_literals(ex.outputs["code"])) <= question_numbers | fixed, ex.id
        # the words stay: only numbers differ
        assert re.sub(r"[\d,.]+", "#", ex.question) == re.sub(r"[\d,.]+", "#", original.question)


def test_kept_variants_keep_the_answers_type_and_sign(gold, augmented):
    by_id = {ex.id: ex for ex in gold}
    for ex in augmented[0]:
        old, new = Fraction(by_id[ex.id.split("~")[0]].answer), Fraction(ex.answer)
        assert (old.denominator == 1) <= (new.denominator == 1) and (old > 0) == (new > 0)


def test_variants_are_distinct_and_at_most_the_multiplier_per_example(augmented):
    variants, counts = augmented
    per_example = {}
    for ex in variants:
        per_example.setdefault(ex.id.split("~")[0], set()).add(ex.question)
    assert all(len(qs) <= 3 for qs in per_example.values())
    assert sum(len(qs) for qs in per_example.values()) == len(variants)  # no duplicate question
    assert counts["multiplier"] == 3 and counts["examples_with_a_variant"] == len(per_example)


def test_checks_drop_a_whole_answer_turned_fraction_a_sign_flip_and_a_blow_up():
    assert check_variant([36, 18, 24], [36, 18.5, 24.5]) == "type_or_sign"
    assert check_variant([10, 4], [10, -2]) == "type_or_sign"
    assert check_variant([10, 4], [10, 400]) == "implausible"
    assert check_variant([10, 4], None) == "not_arithmetic"
    assert check_variant([3, 2.5], [3, 2.125]) == "implausible"  # a fractional answer keeps 2 decimals
    assert check_variant([10, 4], [12, 6]) == "ok"


def test_units_ones_years_and_numbers_the_program_does_not_read_stay_fixed():
    question = "In 2019 Ann bought 12 eggs and 1 box of 40 pens for 30% off, 5 times."
    found = perturbable(question, "n1 = 40*5; n2 = n1*0.3; n3 = 12+1; answer = n2")
    assert set(found) == {40, 5} and not set(found) & UNIT_CONSTANTS  # 30 is read as 0.3: fixed


def test_draws_keep_granularity_range_and_the_percent_bound():
    import random

    rng = random.Random(0)
    for _ in range(200):
        tens = draw(Fraction(40), 0, False, rng)
        assert tens % 10 == 0 and 20 <= tens <= 80 and tens != 40
        cents = draw(Fraction("2.5"), 1, False, rng)
        assert (cents * 10).denominator == 1 and Fraction("1.2") <= cents <= 5
        assert draw(Fraction(80), 0, True, rng) <= 100


def test_run_program_gives_every_statements_value():
    assert run_program("n1 = 48/2; n2 = 48+n1; answer = n2") == [24, 72, 72]
    assert run_program("n1 = 48/0; answer = n1") is None


def test_recipe_records_the_multiplier_and_counts_and_refuses_bad_multipliers(data_dir):
    kept, report = collect_gold(Recipe(gold=(("pot", 40),), augment=2, data_dir=str(data_dir)))
    assert report["augment"]["multiplier"] == 2 and report["augment"]["kept"] == len(kept) - 40 > 0
    assert {"examples", "type_or_sign", "ok"} <= set(report["augment"])
    for bad in (-1, 17, 1.5, True):
        with pytest.raises(ConfigError):
            Recipe(gold=(("pot", 40),), augment=bad)
    with pytest.raises(ConfigError, match="pot"):
        Recipe(gold=(("cot", 40),), augment=2)
