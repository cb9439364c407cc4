"""Selection among PoT@k samples: the majority (default) and a vote weighted by the model's own
confidence in each program (token logprobs), both reported from the same samples."""

from __future__ import annotations

import json
import math

import dspy
import pytest

from reasonflow import StructuredAdapter
from reasonflow.bench import run_bench
from reasonflow.checking import numeric_equivalent, weighted_vote
from reasonflow.errors import ConfigError
from reasonflow.registry import get_program
from reasonflow.search.task import sequence_confidence
from reasonflow.testing import ScriptedLM

# Three unsure programs agree on 5; two confident ones say 7.
CODES = ["answer = 2 + 3", "answer = 5", "answer = 10 / 2", "answer = 3 + 4", "answer = 7"]
CONFIDENT = {"answer = 3 + 4", "answer = 7"}


def logprobs(call, text):
    code = json.loads(text)["code"]
    lp = math.log(0.9) if code in CONFIDENT else math.log(0.2)
    return [(tok, [(tok, lp)]) for tok in ("{", '"code"', ":", json.dumps(code), "}")]


def scripted():
    return ScriptedLM(lambda call: [{"code": c} for c in CODES][:call.n], logprobs=logprobs)


def test_weighted_vote_counts_each_answer_by_its_weight_with_the_documented_tie_break():
    assert weighted_vote(["5", "5", "7"], [0.2, 0.2, 0.9]).answer == "7"
    assert weighted_vote(["5", "5", "7"], [0.3, 0.3, 0.6]).answer == "5"  # a tie: the earlier cluster
    assert weighted_vote(["5", "5.0", "7"], [None, None, None], numeric_equivalent).answer == "5"  # = majority
    result = weighted_vote([None, "", "7", "7.0"], [5.0, 5.0, 0.25, 0.5], numeric_equivalent)
    assert result.answer == "7" and result.counts == [("7", 0.75)] and result.total == 0.75
    assert weighted_vote([], []).answer is None
    with pytest.raises(ValueError):
        weighted_vote(["5"], [])


def test_sequence_confidence_is_the_geometric_mean_token_probability():
    lp = {"content": [{"token": "a", "logprob": math.log(0.5)}, {"token": "b", "logprob": math.log(0.125)}]}
    assert sequence_confidence(lp) == pytest.approx(0.25)
    assert sequence_confidence(None) is None and sequence_confidence({"content": []}) is None


def test_pot_reports_majority_and_logprob_selection_from_the_same_samples():
    lm = scripted()
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        majority = get_program("gsm8k.pot@5")(question="q")
    assert len(lm.calls) == 1 and lm.calls[0].kwargs["logprobs"] is True
    assert majority.answer == 5 and majority.selections == {"majority": 5, "logprob": 7}
    assert majority.confidences == [pytest.approx(0.2)] * 3 + [pytest.approx(0.9)] * 2
    lm = scripted()
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        weighted = get_program("gsm8k.pot@5", select="logprob")(question="q")
    assert weighted.answer == 7 and weighted.samples == majority.samples
    assert weighted.trace.graph.nodes["n4"]["status"] in ("selected", "answer")


def test_without_logprobs_the_logprob_rule_is_the_majority():
    lm = ScriptedLM(lambda call: [{"code": c} for c in CODES][:call.n])
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        pred = get_program("gsm8k.pot@5", select="logprob")(question="q")
    assert pred.answer == 5 and pred.selections == {"majority": 5, "logprob": 5}


def test_an_unknown_selection_rule_is_refused():
    with pytest.raises(ConfigError, match="select"):
        get_program("gsm8k.pot@4", select="oracle")


def test_the_bench_scores_both_rules_on_the_same_rows(data_dir, tmp_path):
    from reasonflow import data

    golds = {ex.question: ex.answer for ex in data.load("gsm8k", data_dir=data_dir, limit=2)}

    def script(call):  # three wrong unsure programs, two right confident ones
        gold = golds[call.inputs["question"]]
        return [{"code": f"answer = {gold} + 1"}] * 3 + [{"code": f"answer = {gold}"}] * 2

    def confident(call, text):
        code = json.loads(text)["code"]
        lp = math.log(0.2) if code.endswith("+ 1") else math.log(0.9)
        return [(code, [(code, lp)])]

    result = run_bench("pot@5", "gsm8k", limit=2, data_dir=data_dir, lm=ScriptedLM(script, logprobs=confident),
                       out_dir=tmp_path, progress=False)
    summary = result["results"][0]
    assert summary["accuracy"] == 0.0 and summary["pass@k"] == 1.0
    assert summary["selections"]["majority"]["correct"] == 0 and summary["selections"]["logprob"]["correct"] == 2
    rows = [json.loads(line) for line in (tmp_path / "questions.jsonl").read_text().splitlines()]
    assert all(r["selections_correct"] == {"majority": False, "logprob": True} for r in rows)
    assert "logprob 100.0%" in result["table"]
