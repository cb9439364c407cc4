"""game24_check: legal solutions pass; every rule break (and any non-arithmetic) fails without eval."""

from __future__ import annotations

import pytest

from reasonflow.checking import game24_check
from reasonflow.checking.game24 import MAX_EXPRESSION_CHARS, parse_numbers
from reasonflow.errors import ConfigError


@pytest.mark.parametrize(
    "expression, numbers",
    [
        ("(6 - 4) * (1 + 11)", "4 6 1 11"),
        ("4 * 6 * 1 * 1", "1 1 4 6"),
        ("8 / (3 - 8 / 3)", "3 3 8 8"),  # needs exact fractions: floats give 23.999999999999996
        ("(1 + 2 + 3) × 4", "1 2 3 4"),
        ("(1 + 2 + 3) x 4 = 24", "1 2 3 4"),
        ("(1+2+3)\\times 4", [1, 2, 3, 4]),
        ("48 ÷ 2 × 1 × 1", ["48", "2", "1", "1"]),
        ("$(10 - 4) \\cdot (2 + 2) = 24.$", "10,4,2,2"),
    ],
)
def test_game24_accepts_legal_solutions(expression, numbers):
    assert game24_check(expression, numbers)


@pytest.mark.parametrize(
    "expression, why",
    [
        ("4 * 6 * 1 * 6", "a number used twice"),
        ("4 * 6 * 1", "a number missing"),
        ("4 * 6 + 1 + 1", "totals 26"),
        ("4 * 6 / (1 - 1)", "divides by zero"),
        ("-(1 - 4) * 6 + 1 + 1 - 1 - 1", "uses numbers not in the puzzle"),
        ("4 ** 1 * 6 * 1", "uses an exponent"),
        ("4 * 6 * 11 / 11", "uses numbers not in the puzzle"),
        ("(1 + 1)(4 + 6)", "implicit multiplication"),
        ("__import__('os').system('echo pwned')", "is code, not arithmetic"),
        ("[4, 6, 1, 1]", "is a list"),
        ("4.0 * 6 * 1 * 1", "uses a decimal"),
        ("24", "skips the puzzle"),
        ("4 * 6 * 1 * 1 = 25", "claims the wrong total"),
        ("", "is empty"),
        (None, "is None"),
    ],
)
def test_game24_rejects_rule_breaks(expression, why):
    assert not game24_check(expression, "1 1 4 6"), why


def test_game24_never_executes_code(tmp_path):
    marker = tmp_path / "ran"
    assert not game24_check(f"open({str(marker)!r}, 'w').write('x') or 24", "1 1 4 6")
    assert not marker.exists()


def test_game24_rejects_unary_minus_even_when_the_value_is_24():
    assert not game24_check("-(1 - 4 * 6) + 1 - 1 - 1 + 1", "1 1 1 1 4 6")
    assert game24_check("(1 - 1) + 4 * 6", "1 1 4 6")


def test_game24_rejects_overlong_expressions_without_parsing():
    long_expression = "(" * 150 + "4 * 6 * 1 * 1" + ")" * 150
    assert len(long_expression) > MAX_EXPRESSION_CHARS
    assert not game24_check(long_expression, "1 1 4 6")


def test_game24_malformed_puzzle_numbers_are_a_config_error():
    for bad in ("1 one 4 6", "", [1.5, 2, 3, 4], [None]):
        with pytest.raises(ConfigError):
            parse_numbers(bad)
    assert parse_numbers(" 1, 1  4 6 ") == [1, 1, 4, 6]
