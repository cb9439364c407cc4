"""Number-perturbation augmentation of gold PoT examples (GSM-Symbolic's construction, for training).

A gold PoT program (``n1 = 48/2; n2 = 48+n1; answer = n2``) is a function of the question's numbers.
``augment(examples, multiplier)`` rewrites a question with other numbers in the same places, puts the
same numbers into the program's literals, reruns the program and takes its result as the variant's
answer, which is then exact again. Per gold example it tries up to ``multiplier *
TRIES_PER_VARIANT`` draws and keeps at most ``multiplier`` distinct variants.

What is perturbed: a number of the question that the program uses as a literal, except 0, 1, the
unit constants (``UNIT_CONSTANTS``: 2, 7, 12, 24, 52, 60, 100, 365 may be halves, weeks, dozens,
days, weeks a year, hours, percent or days a year) and years (1900-2100); every other number stays as written, so a number the program
reads in another form ("20%" as 0.2) keeps the question and the program consistent. A new value
keeps the original's granularity (40 -> a multiple of 10, 2.5 -> one decimal place) and lies in
[original / 2, original * 2] (at least 3 choices); a percentage stays at most 100.

A variant is kept only when (counted per reason otherwise):

- the program runs (arithmetic only, ``checking.numeric.eval_arithmetic``) - ``not_arithmetic``;
- every result keeps the original's type and sign: a whole number stays whole, a positive one
  positive, a non-negative one non-negative - ``type_or_sign``;
- the answer stays in a plausible range: within ``MAX_ANSWER_SCALE`` of the original's magnitude,
  at most ``MAX_ANSWER_DECIMALS`` decimal places where the original had any - ``implausible``;
- it is new (not the original question, not an earlier variant) - ``duplicate``.

Not guaranteed: the checks bound type, sign and size, not meaning. A number the question states
twice in different roles changes in both places, and a variant can be semantically odd (more pens
used than bought) when the checks cannot see it; dropped draws are counted, not repaired.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import replace
from fractions import Fraction

from reasonflow.checking import numeric
from reasonflow.checking.numeric import canonical, eval_arithmetic
from reasonflow.errors import ConfigError
from reasonflow.finetune.data import PROGRAM_SEPARATOR, SFTExample

MAX_MULTIPLIER = 16  # variants per gold example
TRIES_PER_VARIANT = 4  # draws per wanted variant before giving up on an example
MAX_ANSWER_SCALE = 20.0  # a variant's answer stays within 1/20x..20x of the original's magnitude
MAX_ANSWER_DECIMALS = 2  # a fractional answer (money) keeps at most this many decimal places
UNIT_CONSTANTS = frozenset(numeric.UNIT_CONSTANTS)  # never perturbed
YEARS = (1900, 2100)

# A plain number: not part of a word, a time (3:30), a date or a fraction (1/2), no sign.
_NUMBER = re.compile(r"(?<![\w.,:/$-])\$?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w:/]|[.,]\d)")
_LITERAL = re.compile(r"(?<![\w.])(\d+)(\.\d+)?(?![\w.])")
_PERCENT = re.compile(r"\s*(%|percent)")


def _value(whole: str, frac: str | None) -> Fraction:
    return Fraction(whole.replace(",", "") + (frac or ""))


def _places(frac: str | None) -> int:
    return len(frac) - 1 if frac else 0


def perturbable(question: str, code: str) -> dict[Fraction, dict]:
    """The question's numbers that may change: value -> {"places", "percent"} (see the docstring)."""
    literals = {_value(m[1], m[2]) for m in _LITERAL.finditer(code)}
    found: dict[Fraction, dict] = {}
    for m in _NUMBER.finditer(question):
        value = _value(m[1], m[2])
        if value in (0, 1) or value in UNIT_CONSTANTS or value not in literals:
            continue
        if value.denominator == 1 and YEARS[0] <= value <= YEARS[1]:
            continue
        info = found.setdefault(value, {"places": _places(m[2]), "percent": False})
        info["places"] = max(info["places"], _places(m[2]))
        info["percent"] |= bool(_PERCENT.match(question, m.end()))
    return found


def draw(value: Fraction, places: int, percent: bool, rng: random.Random) -> Fraction:
    """A new value of the same granularity in [value / 2, value * 2] (capped at 100 for a percent)."""
    step = Fraction(1, 10**places)
    if places == 0:
        while value % (step * 10) == 0 and value // (step * 10) >= 2:
            step *= 10
    units = value / step
    lo, hi = max(1, math.ceil(units / 2)), max(math.floor(units * 2), math.ceil(units / 2) + 2)
    if percent:
        hi = min(hi, int(100 / step))
    choices = [u for u in range(lo, hi + 1) if u != units]
    return rng.choice(choices) * step if choices else value


def _text(value: Fraction, places: int, commas: bool) -> str:
    if places:
        return f"{float(value):,.{places}f}" if commas else f"{float(value):.{places}f}"
    return f"{int(value):,}" if commas else str(int(value))


def _substitute(question: str, code: str, mapping: dict[Fraction, Fraction], places: dict[Fraction, int]):
    def in_question(m: re.Match) -> str:
        value = _value(m[1], m[2])
        if value not in mapping:
            return m[0]
        return m[0].replace(m[1] + (m[2] or ""), _text(mapping[value], places[value], "," in m[1]), 1)

    def in_code(m: re.Match) -> str:
        value = _value(m[1], m[2])
        return _text(mapping[value], places[value], False) if value in mapping else m[0]

    return _NUMBER.sub(in_question, question), _LITERAL.sub(in_code, code)


def run_program(code: str) -> list[float] | None:
    """The value of every statement of a one-line gold program, in order (the last is ``answer``),
    or None when one is not arithmetic over the earlier ones."""
    env, values = {}, []
    for statement in code.split(PROGRAM_SEPARATOR.strip()):
        name, sep, expr = statement.strip().partition("=")
        value = eval_arithmetic(expr.strip(), env) if sep else None
        if value is None or not math.isfinite(value):
            return None
        env[name.strip()] = value
        values.append(value)
    return values


def _whole(x: float) -> bool:
    return abs(x - round(x)) < 1e-9


def _same_kind(old: float, new: float) -> bool:
    """Whole stays whole; positive stays positive, negative negative, zero non-negative."""
    if _whole(old) and not _whole(new):
        return False
    if old > 0:
        return new > 0
    return new < 0 if old < 0 else new >= 0


def check_variant(original: list[float], variant: list[float] | None) -> str:
    """"ok", or why a variant's results are dropped (see the module docstring)."""
    if variant is None or len(variant) != len(original):
        return "not_arithmetic"
    if not all(_same_kind(a, b) for a, b in zip(original, variant)):
        return "type_or_sign"
    old, new = abs(original[-1]), abs(variant[-1])
    if old and not (old / MAX_ANSWER_SCALE <= new <= old * MAX_ANSWER_SCALE):
        return "implausible"
    if not _whole(original[-1]) and not _whole(variant[-1] * 10**MAX_ANSWER_DECIMALS):
        return "implausible"
    return "ok"


def variants(example: SFTExample, multiplier: int, rng: random.Random, counts: Counter) -> list[SFTExample]:
    """Up to ``multiplier`` kept variants of one gold PoT example."""
    code = example.outputs["code"]
    numbers, original = perturbable(example.question, code), run_program(code)
    if not numbers or original is None:
        counts["examples_without_perturbable_numbers"] += 1
        return []
    places = {v: info["places"] for v, info in numbers.items()}
    kept, seen = [], {example.question}
    for _ in range(multiplier * TRIES_PER_VARIANT):
        if len(kept) == multiplier:
            break
        mapping = {v: draw(v, info["places"], info["percent"], rng) for v, info in numbers.items()}
        question, new_code = _substitute(example.question, code, mapping, places)
        values = run_program(new_code)
        why = "duplicate" if question in seen else check_variant(original, values)
        counts[why] += 1
        if why != "ok":
            continue
        seen.add(question)
        answer = str(round(values[-1])) if _whole(values[-1]) else canonical(Fraction(repr(round(values[-1], 6))))
        kept.append(replace(example, id=f"{example.id}~v{len(kept) + 1}", source="gold:augment", question=question,
                            outputs={"code": new_code}, inputs=None, answer=answer))
    return kept


def augment(examples: list[SFTExample], multiplier: int, seed: int = 0) -> tuple[list[SFTExample], dict]:
    """Variants of the gold ``pot`` examples (others are skipped), seeded per example; returns the
    variants and the counts for the manifest (multiplier, examples, kept, dropped per reason)."""
    if isinstance(multiplier, bool) or not isinstance(multiplier, int) or not 0 <= multiplier <= MAX_MULTIPLIER:
        raise ConfigError(f"augment multiplier must be an int in 0..{MAX_MULTIPLIER}, got {multiplier!r}")
    counts: Counter = Counter()
    kept: list[SFTExample] = []
    for ex in examples:
        if multiplier == 0 or ex.format != "pot" or not ex.source.startswith("gold"):
            continue
        counts["examples"] += 1
        found = variants(ex, multiplier, random.Random(f"{seed}|augment|{ex.id}"), counts)
        counts["examples_with_a_variant"] += bool(found)
        kept += found
    return kept, {"multiplier": multiplier, "kept": len(kept), **dict(sorted(counts.items()))}
