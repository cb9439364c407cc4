"""Bounded PoT (``gsm8k.bpot``): the whole program goes through the action-space grammar, so a literal
the question lacks, a variable used before it is defined or a self-reference can be neither produced
(the request carries the pattern) nor accepted (a program outside it is refused before it runs)."""

from __future__ import annotations

import re

import dspy
import pytest

from programs.gsm8k import (
    MAX_PROGRAM_STATEMENTS, UNIT_CONSTANTS, bounded, program_pattern, question_literals, statement_pattern,
)
from reasonflow import StructuredAdapter, data
from reasonflow.finetune import gold_examples
from reasonflow.registry import get_program
from reasonflow.strategies import pot as pot_module
from reasonflow.testing import ScriptedLM

QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether in April and May?")


@pytest.mark.parametrize("code", [
    "n1 = 48/2; n2 = 48+n1; answer = n2",          # the training format
    "n1 = 48 / 2; n2 = 48 + n1; answer = n2",      # spaced
    "n1 = (48+48)/2; answer = n1+48",              # one level of parentheses
    "answer = 48+48/2",
])
def test_programs_over_the_questions_numbers_and_earlier_variables_are_bounded(code):
    assert bounded(QUESTION, code)


@pytest.mark.parametrize("code, why", [
    ("n1 = 48/2; n2 = 20+n1+n2; answer = n2", "self-reference"),
    ("n1 = n2+48; n2 = 48/2; answer = n1", "use before definition"),
    ("n1 = 48*13; answer = n1", "a literal the question lacks"),
    ("n1 = 48/2; n3 = 48+n1; answer = n3", "a skipped statement number"),
    ("n1 = 48/2\nanswer = n1", "another separator"),
    ("import os; answer = 48", "not arithmetic"),
    ("n1 = 48/2; n2 = 48+n1", "no answer"),
    ("n1 = ((48+48)/2); answer = n1", "nested parentheses"),
    ("answer = " + " + ".join(["48"] * 8), "too many operands"),
])
def test_out_of_grammar_programs_are_not_bounded(code, why):
    assert not bounded(QUESTION, code), why


def test_statement_count_is_bounded():
    chain = "; ".join(f"n{i} = {'48' if i == 1 else f'n{i - 1}+48'}" for i in range(1, MAX_PROGRAM_STATEMENTS + 2))
    assert bounded(QUESTION, "; ".join(chain.split("; ")[:MAX_PROGRAM_STATEMENTS]) + f"; answer = n{MAX_PROGRAM_STATEMENTS}")
    assert not bounded(QUESTION, chain + f"; answer = n{MAX_PROGRAM_STATEMENTS + 1}")


def test_each_statement_has_the_operands_of_the_tot_statement_grammar():
    """One grammar: statement K of a bounded program takes exactly statement_pattern's operands at K."""
    steps = ["n1 = 48 / 2", "n2 = 48 + n1"]
    for operand in question_literals(QUESTION) + list(UNIT_CONSTANTS) + ["n1", "n2", "n3"]:
        allowed_tot = re.fullmatch(statement_pattern(QUESTION, steps), f"n3 = {operand}") is not None
        allowed_program = bounded(QUESTION, f"n1 = 48/2; n2 = 48+n1; n3 = {operand}; answer = n3")
        assert allowed_tot == allowed_program, operand


def test_number_words_of_the_question_are_literals():
    question = "Twenty customers each bought three times 15 marbles and half a 1.50 pie."
    assert {"20", "3", "15", "2", "1.50", "1.5"} <= set(question_literals(question))
    assert bounded(question, "n1 = 20*15*3; n2 = 1.5/2; answer = n1+n2")


def test_most_gold_train_programs_are_bounded(data_dir):
    gold, _ = gold_examples(data.load("gsm8k", split="train", data_dir=data_dir, seed=0, limit=300), ["pot"])
    share = sum(bounded(ex.question, ex.outputs["code"]) for ex in gold) / len(gold)
    assert 0.6 < share < 1.0  # the rest use a number the question does not state


def test_bpot_sends_the_grammar_and_refuses_a_program_outside_it(monkeypatch):
    ran = []
    real = pot_module.arun_code

    async def spy(code, **limits):
        ran.append(code)
        return await real(code, **limits)

    monkeypatch.setattr(pot_module, "arun_code", spy)
    codes = ["n1 = 48/2; n2 = 48+n1; answer = n2", "n1 = 48/2; n2 = 20+n1+n2; answer = n2",
             "answer = 99", "n1 = 48/2; n2 = 48+n1; answer = n2"]
    lm = ScriptedLM(lambda call: [{"code": c} for c in codes][:call.n])
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        pred = get_program("gsm8k.bpot@4")(question=QUESTION)
    fmt = lm.calls[0].kwargs["response_format"]
    assert fmt["json_schema"]["schema"]["properties"]["code"]["pattern"] == program_pattern(QUESTION)
    assert ran == [codes[0], codes[3]]  # the out-of-grammar programs never ran
    assert [e.split(":")[0] if e else None for e in pred.errors] == [None, "OutOfGrammar", "OutOfGrammar", None]
    assert pred.answer == 72 and pred.votes == [[72, 2]]


def test_free_pot_sends_no_grammar_and_pot_bounded_is_bpot():
    lm = ScriptedLM(lambda call: {"code": "answer = 99"})
    with dspy.context(lm=lm, adapter=StructuredAdapter()):
        free = get_program("gsm8k.pot")(question=QUESTION)
        refused = get_program("gsm8k.pot", bounded=True)(question=QUESTION)
    assert free.answer == 99 and "pattern" not in str(lm.calls[0].kwargs.get("response_format"))
    assert refused.answer is None and refused.errors[0].startswith("OutOfGrammar")


def test_the_grammar_compiles_in_vllms_guided_decoding_backend_and_enforces_the_bound():
    """xgrammar (vLLM's structured-output backend) takes the request's schema as sent, and its matcher
    accepts the bounded program's JSON and refuses a self-reference and a foreign literal mid-string."""
    import json

    xgr = pytest.importorskip("xgrammar")
    from transformers import AutoTokenizer

    from programs.gsm8k import GSM8K_BOUNDED
    from reasonflow.finetune.train import base_model_info
    from reasonflow.search.actions import step_format
    from reasonflow.strategies.pot import WriteProgram

    tokenizer = AutoTokenizer.from_pretrained(base_model_info("smollm2-135m")[0])
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer))
    schema = step_format(GSM8K_BOUNDED, WriteProgram, QUESTION, [])["json_schema"]["schema"]
    grammar = compiler.compile_json_schema(json.dumps(schema), strict_mode=True)

    def accepts(code: str) -> bool:
        return xgr.GrammarMatcher(grammar).accept_string(json.dumps({"code": code}, separators=(",", ":")))

    assert accepts("n1 = 48/2; n2 = 48+n1; answer = n2")
    assert not accepts("n1 = 48/2; n2 = 20+n1+n2; answer = n2") and not accepts("answer = 48*13")
