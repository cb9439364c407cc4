"""majority_vote (tie-break, invalid answers, purity) and check() dispatch."""

from __future__ import annotations

import dataclasses

import pytest

from reasonflow.checking import CHECKERS, VoteResult, check, majority_vote, numeric_equivalent
from reasonflow.errors import ConfigError


def test_majority_vote_picks_the_largest_cluster():
    result = majority_vote(["20", "18", "18", " 18 ", "20 "])
    assert result == VoteResult(answer="18", counts=[("20", 2), ("18", 3)], total=5)
    assert result.share == pytest.approx(0.6)


def test_majority_vote_tie_goes_to_the_cluster_seen_first():
    assert majority_vote(["7", "9", "9", "7"]).answer == "7"
    assert majority_vote(["9", "7", "7", "9"]).answer == "9"
    assert majority_vote(["a", "b", "c"]).answer == "a"


def test_majority_vote_ignores_none_and_blank_answers():
    result = majority_vote([None, "", "   ", "5", None, "6", "6"])
    assert result.answer == "6" and result.total == 3
    assert result.counts == [("5", 1), ("6", 2)]


def test_majority_vote_with_no_valid_answer_has_no_winner():
    assert majority_vote([None, "", " "]) == VoteResult(answer=None, counts=[], total=0)
    assert majority_vote([]).answer is None
    assert majority_vote([]).share == 0.0


def test_majority_vote_default_equivalence_is_exact_text():
    assert majority_vote(["18", "18.0", "18.0"]).answer == "18.0"


def test_majority_vote_numeric_equivalence_merges_number_spellings():
    result = majority_vote(["18", "20", "$18.00", "18.0", "20"], numeric_equivalent)
    assert result.answer == "18"  # the cluster is represented by its first member
    assert result.counts == [("18", 3), ("20", 2)]


def test_majority_vote_compares_each_answer_with_cluster_first_members_in_order():
    calls = []

    def spy(answer, first):
        calls.append((answer, first))
        return False

    majority_vote(["a", "b", "c"], spy)
    assert calls == [("b", "a"), ("c", "a"), ("c", "b")]


def test_majority_vote_is_pure():
    answers = [" 3", None, "3", "4"]
    snapshot = list(answers)
    first = majority_vote(answers)
    assert answers == snapshot
    assert majority_vote(answers) == first
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.answer = "4"


def test_check_dispatches_by_kind():
    assert set(CHECKERS) == {"number", "latex", "game24"}
    assert check("number", "So she pays $1,000.", "1000")
    assert not check("number", "999", "1000")
    assert check("number", "1000.4", "1000", rel_tol=1e-3)
    assert check("game24", "(6 - 4) * (1 + 11)", "4 6 1 11")
    assert not check("game24", "4 * 6", "4 6 1 11")


def test_check_missing_prediction_is_false_for_every_kind():
    for kind in CHECKERS:
        assert not check(kind, None, "1 1 4 6")
        assert not check(kind, "  ", "1 1 4 6")


def test_check_unknown_kind_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match="game24"):
        check("regex", "1", "1")
    with pytest.raises(ConfigError):
        check("regex", None, "1")  # the kind is validated before the prediction
