"""extract_number / numbers_equal / regex_only_number: the forms GSM8K-style answers come in."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import pytest

from reasonflow.checking import extract_number, numbers_equal, numeric_equivalent, regex_only_number
from reasonflow.checking.numeric import canonical
from reasonflow.errors import ConfigError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1,000", "1000"),
        ("$18.00", "18"),
        ("It costs $18.00.", "18"),
        ("The answer is 42.", "42"),
        ("-5", "-5"),
        ("18 dollars", "18"),
        ("She ran 5 km", "5"),
        ("3/4", "0.75"),
        ("50%", "50"),
        ("x = -3.50", "-3.5"),
        (".5 cups", "0.5"),
        ("−4", "-4"),  # unicode minus
        ("-0", "0"),
        ("The total is -$12.", "-12"),
        ("1/3", "1/3"),  # a non-terminating decimal stays an exact fraction
    ],
)
def test_extract_number_reads_common_answer_forms(text, expected):
    assert extract_number(text) == expected


def test_extract_number_prefers_the_last_number_without_a_marker():
    assert extract_number("She had 3 apples, bought 5, and now has 8") == "8"


def test_extract_number_takes_the_number_after_the_marker_even_if_more_follow():
    assert extract_number("The answer is 7. I checked it 3 times.") == "7"
    assert extract_number("9 * 2 = 18\n#### 1,234\nthanks 5") == "1234"
    assert extract_number("Answer: 12 km, not 13") == "12"


def test_extract_number_uses_the_last_marker_when_there_are_several():
    assert extract_number("The answer is 5. Wait, no: the answer is 6.") == "6"


def test_extract_number_falls_back_to_the_last_number_when_the_marker_has_none_after_it():
    assert extract_number("I computed 41 then 42. The answer is unclear") == "42"


def test_extract_number_treats_a_hyphen_between_operands_as_subtraction_not_a_sign():
    assert extract_number("5-3") == "3"
    assert extract_number("COVID-19 cases rose by 7") == "7"


def test_extract_number_returns_none_without_a_usable_number():
    assert extract_number("no numbers here") is None
    assert extract_number("") is None
    assert extract_number(None) is None
    assert extract_number("1/0") is None  # a zero denominator is not a number
    assert extract_number("1" * 300) is None  # past MAX_NUMBER_DIGITS


def test_canonical_is_exact_for_terminating_decimals_and_fractions_otherwise():
    assert canonical(Fraction(-3, 4)) == "-0.75"
    assert canonical(Fraction(1, 2**40)) == format(Decimal(1) / Decimal(2**40), "f")
    assert canonical(Fraction(2, 6)) == "1/3"
    assert canonical(Fraction(1800, 100)) == "18"


def test_numbers_equal_compares_strings_and_numbers_by_value():
    assert numbers_equal("1,000", 1000)
    assert numbers_equal("$18.00", "18")
    assert numbers_equal(0.1, "0.1", rel_tol=0)  # a float is read through its repr, not its binary value
    assert numbers_equal(Decimal("2.50"), Fraction(5, 2), rel_tol=0)
    assert not numbers_equal("18", "19")


def test_numbers_equal_tolerance_is_relative():
    assert numbers_equal("1/3", 0.333333333)
    assert not numbers_equal("1/3", 0.333, rel_tol=1e-6)
    assert numbers_equal("1000000", "1000000.5", rel_tol=1e-6)
    assert not numbers_equal(0, 1e-12)  # no absolute floor: zero equals only zero


def test_numbers_equal_rejects_non_numbers():
    for bad in (None, "", "n/a", float("nan"), float("inf"), True, [1]):
        assert not numbers_equal(bad, 1), bad
        assert not numbers_equal(1, bad), bad


def test_numbers_equal_negative_tolerance_is_a_config_error():
    with pytest.raises(ConfigError):
        numbers_equal(1, 1, rel_tol=-1)


def test_numeric_equivalent_matches_numbers_equal():
    assert numeric_equivalent("18.0", "$18")
    assert not numeric_equivalent("18", "20")


def test_regex_only_number_is_the_naive_last_match():
    assert regex_only_number("1,000") == "000"
    assert regex_only_number("The answer is 42.") == "42."
    assert regex_only_number("5-3") == "-3"
    assert regex_only_number("no digits") is None


def test_extract_number_reads_every_gsm8k_test_gold(data_dir):
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()]
    def gold(answer: str) -> str:
        return canonical(Fraction(answer.split("####")[-1].strip().replace(",", "")))

    misses = [row["answer"][-80:] for row in rows if extract_number(row["answer"]) != gold(row["answer"])]
    assert len(rows) == 1319 and misses == []
