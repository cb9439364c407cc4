"""GSM8K programs: chain-of-thought, self-consistency and tree-of-thought over short steps.

A ToT step is one sentence or one equation; a state is terminal when its last step states the answer
("The answer is 18"), which is then read off programmatically.

``gsm8k.tot`` with ``steps="program"`` searches over program statements instead, through an
open-ended action space: each step is ``nK = E`` or ``answer = E``, where E combines at most
``MAX_OPERANDS`` operands with + - * /, and an operand is a number of the question (in digits, or
named by a word: ``NUMBER_WORDS``), one of ``UNIT_CONSTANTS`` or an earlier variable n1..n(K-1). The regex is built per state
(``statement_pattern``), so a statement cannot use a literal the question lacks or a variable before
it is defined; the answer is computed from the statements (``checking.numeric.eval_arithmetic``).

``gsm8k.bpot`` (bounded PoT, also ``gsm8k.pot`` with ``bounded=True``) writes the whole program in one
request under ``program_pattern``: the same operands per statement, joined in the training format
``n1 = 48/2; n2 = 48+n1; answer = n2`` (spaces around operators optional, one level of parentheses,
at most ``MAX_PROGRAM_STATEMENTS`` statements). A self-reference (``n3 = 20+n2+n3``), a variable used
before its definition or a literal the question lacks cannot be decoded, and is refused if a server
ignores the grammar. Not guaranteed: about a quarter of the gold train programs use a number the
question does not state (a result written out, 0.8 for 80%), so bounded PoT cannot write those.
"""

from __future__ import annotations

import re

import dspy

from reasonflow.checking import extract_number, numeric_equivalent
from reasonflow.checking import numeric
from reasonflow.checking.numeric import eval_arithmetic
from reasonflow.errors import ConfigError
from reasonflow.registry import register
from reasonflow.search import Task
from reasonflow.strategies import BestOfN, ChainOfThought, ProgramOfThought, SelfConsistency, TreeOfThought


class SolveGSM8K(dspy.Signature):
    """Solve the grade-school math word problem. Reason briefly, step by step, with the arithmetic
    written out, then give the final answer as a single number."""

    question: str = dspy.InputField()
    answer: float = dspy.OutputField(desc="the final answer, a number")


class ProposeGSM8KStep(dspy.Signature):
    """Given a math word problem and the steps so far, write only the next step: one sentence or one
    equation. When the steps already give the result, write "The answer is N"."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField(desc="the steps so far, one per line (empty at the start)")
    next_step: str = dspy.OutputField(desc="one sentence or one equation", max_chars=160)


class AnswerGSM8K(dspy.Signature):
    """Given a math word problem and its worked steps, give the final answer as a single number."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField()
    answer: float = dspy.OutputField()


_STATES_ANSWER = re.compile(r"answer\s*(is|:|=)", re.I)


def _terminal(question: str, steps: list[str]) -> bool:
    return bool(steps) and bool(_STATES_ANSWER.search(steps[-1]))


def _final(question: str, steps: list[str]) -> str | None:
    return extract_number(steps[-1]) if _terminal(question, steps) else None


GSM8K = Task("gsm8k", solve=SolveGSM8K, propose=ProposeGSM8KStep, answer=AnswerGSM8K,
             equivalent=numeric_equivalent, is_terminal=_terminal, final_answer=_final)


class ProposeGSM8KStatement(dspy.Signature):
    """Given a math word problem and the program so far, write only the next Python statement:
    nK = an arithmetic expression over the question's numbers and earlier variables, or
    answer = an expression when the program has the result."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField(desc="the program so far, one statement per line (empty at the start)")
    next_step: str = dspy.OutputField(desc="one statement, e.g. n1 = 48 / 2", max_chars=120)


UNIT_CONSTANTS = tuple(str(c) for c in numeric.UNIT_CONSTANTS)  # as the grammar writes them
MAX_OPERANDS = 4
_QUESTION_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def question_numbers(question: str) -> list[str]:
    """The numbers written in the question, commas dropped, in order of appearance, once each."""
    found = [m.replace(",", "").rstrip(".") for m in _QUESTION_NUMBER.findall(question)]
    return list(dict.fromkeys(n for n in found if n))


_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
          "seventeen eighteen nineteen twenty").split()
NUMBER_WORDS = {**{w: str(i) for i, w in enumerate(_UNITS)},
                **{w: str(10 * i) for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), 3)},
                "hundred": "100", "thousand": "1000", "million": "1000000", "dozen": "12", "half": "2", "twice": "2",
                "double": "2", "doubled": "2", "third": "3", "thirds": "3", "triple": "3", "tripled": "3",
                "thrice": "3", "quarter": "4", "quarters": "4", "fourth": "4", "fourths": "4", "quadruple": "4",
                "fifth": "5", "fifths": "5", "tenth": "10", "tenths": "10"}
_WORD = re.compile(r"\b(" + "|".join(sorted(NUMBER_WORDS, key=len, reverse=True)) + r")\b", re.I)


def question_literals(question: str) -> list[str]:
    """The literals a program may use for ``question``: its numbers, then the numbers its words name
    ("three times", "twenty customers", "half"), as ``NUMBER_WORDS`` reads them."""
    written = []
    for number in question_numbers(question):  # 1.50 may be written 1.5, 0.25 as .25
        short = number.rstrip("0").rstrip(".") if "." in number else number
        written += [number, short] + ([short[1:]] if short.startswith("0.") else [])
    words = [NUMBER_WORDS[w.lower()] for w in _WORD.findall(question)]
    return list(dict.fromkeys(written + words))


def _operand(question: str, defined: int) -> str:
    """A regex for one operand: a variable n1..n``defined``, a literal of the question or a unit constant."""
    operands = [f"n{i}" for i in range(defined, 0, -1)]  # longest first: n12 before n1
    operands += sorted(dict.fromkeys(question_literals(question) + list(UNIT_CONSTANTS)), key=len, reverse=True)
    return "(?:" + "|".join(re.escape(o) for o in operands) + ")"


def statement_pattern(question: str, steps: list[str]) -> str:
    """The regex the next statement must match (see the module docstring)."""
    operand = _operand(question, len(steps))
    return rf"^(?:n{len(steps) + 1}|answer) = {operand}(?: [-+*/] {operand}){{0,{MAX_OPERANDS - 1}}}$"


MAX_PROGRAM_STATEMENTS = 8  # nK statements of a bounded program before its answer
MAX_PROGRAM_OPERANDS = 6  # per expression; one level of parentheses, spaces around operators optional


def _program_expression(question: str, defined: int) -> str:
    operand = _operand(question, defined)
    term = rf"(?:{operand}|\({operand}(?: ?[-+*/] ?{operand}){{1,{MAX_PROGRAM_OPERANDS - 1}}}\))"
    return rf"{term}(?: ?[-+*/] ?{term}){{0,{MAX_PROGRAM_OPERANDS - 1}}}"


def program_pattern(question: str, max_statements: int = MAX_PROGRAM_STATEMENTS) -> str:
    """The regex a whole bounded program matches: ``n1 = E; n2 = E; ...; answer = E`` (the training
    format, ``finetune.data.PROGRAM_SEPARATOR``), where statement K's operands are those of
    ``statement_pattern`` at K (question numbers, unit constants, n1..n(K-1)): no literal the question
    lacks, no variable before it is defined, no self-reference."""
    level = f"n{max_statements} = {_program_expression(question, max_statements - 1)}; " \
            f"answer = {_program_expression(question, max_statements)}"
    for k in range(max_statements - 1, 0, -1):
        level = (f"n{k} = {_program_expression(question, k - 1)}"
                 f"(?:; answer = {_program_expression(question, k)}|; {level})")
    return f"^(?:answer = {_program_expression(question, 0)}|{level})$"


def bounded(question: str, code: str) -> bool:
    """Whether ``code`` is a bounded program for ``question`` (matches ``program_pattern``)."""
    return re.fullmatch(program_pattern(question), code) is not None


def _program_env(steps: list[str]) -> dict[str, float] | None:
    env: dict[str, float] = {}
    for step in steps:
        name, _, expr = step.partition(" = ")
        value = eval_arithmetic(expr, env)
        if value is None:
            return None
        env[name.strip()] = value
    return env


def _program_terminal(question: str, steps: list[str]) -> bool:
    return bool(steps) and steps[-1].startswith("answer = ")


def _program_answer(question: str, steps: list[str]) -> str | None:
    env = _program_env(steps) if _program_terminal(question, steps) else None
    return None if env is None else format(env["answer"], "g")


GSM8K_PROGRAM = Task("gsm8k", solve=SolveGSM8K, propose=ProposeGSM8KStatement, answer=AnswerGSM8K,
                     equivalent=numeric_equivalent, is_terminal=_program_terminal, final_answer=_program_answer,
                     step_pattern=statement_pattern)


@register("gsm8k.cot", kind="number")
def cot(**options):
    """Chain of thought: one reasoning path, answer as a number."""
    return ChainOfThought(GSM8K, **options)


@register("gsm8k.sc", kind="number")
def sc(k: int = 8, **options):
    """Self-consistency: k sampled chains in one request, majority vote on the number."""
    return SelfConsistency(GSM8K, k=k, **options)


@register("gsm8k.bon", kind="number")
def bon(n: int = 4, **options):
    """Best of n sampled chains, scored by an LM judge."""
    return BestOfN(GSM8K, n=n, **options)


@register("gsm8k.tot", kind="number")
def tot(breadth: int = 3, depth: int = 4, proposals: int = 3, steps: str = "text", **options):
    """Tree of thought (BFS): steps are sentences or equations (``steps="program"``: statements of a
    program, guided by a per-state grammar), scored sure/likely/impossible."""
    if steps not in ("text", "program"):
        raise ConfigError(f"steps must be 'text' or 'program', got {steps!r}")
    task = GSM8K_PROGRAM if steps == "program" else GSM8K
    return TreeOfThought(task, breadth=breadth, depth=depth, proposals=proposals, **options)


# Bounded PoT: the whole program is guided by ``program_pattern`` and refused when it does not match.
GSM8K_BOUNDED = Task("gsm8k", solve=SolveGSM8K, propose=ProposeGSM8KStep, answer=AnswerGSM8K,
                     equivalent=numeric_equivalent, step_pattern=lambda question, steps: program_pattern(question))


@register("gsm8k.pot", kind="number")
def pot(k: int = 1, bounded: bool = False, **options):
    """Program of thought: k Python programs in one request, run in the sandbox, majority vote on their
    results (``select="logprob"``: weighted by the model's confidence; ``bounded=True``: as gsm8k.bpot)."""
    if not isinstance(bounded, bool):
        raise ConfigError(f"bounded must be true or false, got {bounded!r}")
    return ProgramOfThought(GSM8K_BOUNDED if bounded else GSM8K, k=k, **options)


@register("gsm8k.bpot", kind="number", strategy="pot")
def bpot(k: int = 1, **options):
    """Bounded program of thought: each program is ``n1 = E; ...; answer = E`` over the question's numbers,
    unit constants and earlier variables only (guided decoding; anything else is refused)."""
    return ProgramOfThought(GSM8K_BOUNDED, k=k, **options)
