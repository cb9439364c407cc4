"""Supervised fine-tuning data: gold solutions and search traces, rendered as inference prompts them.

Two sources, each example tagged with where it came from (``source`` and the dataset row ``id``):

- **gold**: GSM8K train solutions. A solution's calculator notes (``48/2 = <<48/2=24>>24``) become
  Python statements for Program-of-Thought, on one line: ``n1 = 48/2; n2 = 48+n1; answer = n2``.
  A number in a note that repeats an earlier result (and is not in the question) becomes that
  variable, so the program never asks the model for arithmetic. ``commented=True`` gives the
  multi-line variant with each sentence as a comment (see ``PROGRAM_SEPARATOR`` for why it is not
  the default). Every converted program is executed (arithmetic only, checked on the AST) and kept
  only when it reproduces every note and the gold answer. The CoT variant is the solution text with
  the notes removed.
- **search** (rejection sampling / expert iteration): the bench's traces of a program run over train
  questions; every sample (node) whose answer checks correct is kept, de-duplicated per question.

``render`` turns an example into a prompt/completion pair of chat messages with the *same* DSPy
adapter (``StructuredAdapter``) and the *same* signature that the registered program uses at
inference, so the model learns exactly the format it is asked for. The completion is the compact
JSON that guided decoding produces (no whitespace between tokens, fields in signature order).

Not guaranteed: the conversion is mechanical; solutions whose notes are wrong, non-arithmetic or
never reach the gold answer are dropped (and counted), not repaired.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from reasonflow.checking import check, numbers_equal
from reasonflow.checking.numeric import eval_arithmetic
from reasonflow.errors import ConfigError, DatasetError

# Output formats: the registered program (and its predictor, after "/"; default the first) whose
# signature renders the example.
FORMATS: dict[str, str] = {"pot": "gsm8k.pot", "cot": "gsm8k.cot",
                           "g24-propose": "game24.tot/propose", "g24-value": "game24.tot/value"}
# Statements are joined with "; " on one line. Inside the JSON string a newline is the escape "\n",
# and SmolLM2's tokenizer merges it with what follows (".\\", "nn", "1" for ".\nn1"): the first
# adapter, trained on the commented multi-line format, wrote its programs on one line with spaces
# for newlines, so every program after the first comment was a comment (measured on the engine).
PROGRAM_SEPARATOR = "; "
_NOTE = re.compile(r"<<([^<>=]+)=([^<>]*)>>")
# A note with the prose that restates it: "48/2 = <<48/2=24>>24", "0.2 x 50 = $<<0.2*50=10>>10"
_NOTE_IN_PROSE = re.compile(r"(?<![A-Za-z])(?:[-\d.,\s+*/x×÷()$%]*=\s*)?\$?<<([^<>=]+)=([^<>]*)>>(-?[\d.,]*\d)?")
_NUMBER = re.compile(r"(?<![\w.])(\d+\.\d*|\.\d+|\d+)(?![\w.])")


@dataclass(frozen=True)
class SFTExample:
    """One training target: the question and the signature's output fields for ``format``."""

    id: str  # dataset row, e.g. gsm8k:train:12
    source: str  # "gold" or "search:<program>"
    format: str  # a FORMATS key
    question: str
    outputs: dict
    inputs: dict | None = None  # the predictor's input fields (default: {"question": question})
    answer: str | None = None  # the gold answer, where the source has one (gold, augmented variants)

    def to_dict(self) -> dict:
        return {"id": self.id, "source": self.source, "format": self.format, "question": self.question,
                "inputs": self.prompt_inputs(), "outputs": self.outputs, "answer": self.answer}

    def prompt_inputs(self) -> dict:
        return self.inputs if self.inputs is not None else {"question": self.question}


def _numbers_in(text: str) -> set[float]:
    return {float(m.replace(",", "")) for m in re.findall(r"\d[\d,]*\.?\d*|\.\d+", text) if m.strip(",.")}


def solution_to_program(question: str, solution: str, gold: str, commented: bool = False) -> tuple[str | None, str]:
    """A GSM8K solution as a PoT program: (code, "ok"), or (None, why it was dropped)."""
    body = solution.split("####")[0]
    in_question = _numbers_in(question)
    env: dict[str, float] = {}
    lines: list[str] = []
    for text in body.splitlines():
        if not text.strip():
            continue
        base, code = len(env), []
        for expr, result in _NOTE.findall(text):
            name = f"n{len(env) + 1}"
            expr = _reuse_results(expr.replace("x", "*").replace("×", "*").replace("÷", "/"), env, in_question)
            value = eval_arithmetic(expr, env)
            if value is None:
                return None, "note_not_arithmetic"
            if not numbers_equal(value, result.replace(",", "").rstrip(".")):
                return None, "note_mismatch"
            env[name] = value
            code.append(f"{name} = {expr.strip()}")
        if commented:  # the sentence, with each note (and the prose restating it) replaced by its variable
            names = iter(f"n{base + i + 1}" for i in range(len(code)))
            comment = _NOTE_IN_PROSE.sub(lambda m: f" {next(names)}", text).strip()
            lines.append("# " + re.sub(r"\s+", " ", comment))
        lines.extend(code)
    final = next((name for name in reversed(env) if numbers_equal(env[name], gold)), None)
    if final is None:
        return None, "no_note_gives_gold"
    lines.append(f"answer = {final}")
    return ("\n" if commented else PROGRAM_SEPARATOR).join(lines), "ok"


def _reuse_results(expr: str, env: dict[str, float], in_question: set[float]) -> str:
    """Replace a literal that repeats an earlier result (and is not a number of the question) with
    the latest variable holding it."""

    def swap(match: re.Match) -> str:
        value = float(match.group(1))
        if value in in_question:
            return match.group(1)
        name = next((n for n in reversed(env) if env[n] == value), None)
        return name or match.group(1)

    return _NUMBER.sub(swap, expr)


def solution_to_reasoning(solution: str) -> str:
    """The CoT variant: the worked solution without calculator notes or the #### line."""
    body = _NOTE.sub("", solution.split("####")[0])
    return "\n".join(line.strip() for line in body.splitlines() if line.strip())


def gold_examples(examples: Iterable, formats: Iterable[str]) -> tuple[list[SFTExample], dict]:
    """SFT examples from GSM8K-style ``examples`` (with ``solution``) in each format, plus a count of
    kept and dropped examples per format and reason."""
    formats = list(formats)
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format {fmt!r}; known: {sorted(FORMATS)}")
    limits = {fmt: _max_chars(fmt) for fmt in formats}
    kept, counts = [], Counter()
    for ex in examples:
        solution = getattr(ex, "solution", None)
        if not solution:
            raise DatasetError(f"{getattr(ex, 'id', '?')} has no worked solution (only GSM8K examples carry one)")
        for fmt in formats:
            if fmt == "pot":
                code, why = solution_to_program(ex.question, solution, ex.answer)
                outputs = {"code": code}
            else:
                why, outputs = "ok", {"reasoning": solution_to_reasoning(solution), "answer": ex.answer}
            if why == "ok" and any(len(str(v)) > limits[fmt].get(k, len(str(v))) for k, v in outputs.items()):
                why = "too_long"
            counts[f"{fmt}:{why}"] += 1
            if why == "ok":
                kept.append(SFTExample(ex.id, "gold", fmt, ex.question, outputs, answer=ex.answer))
    return kept, dict(sorted(counts.items()))


def bench_rows(bench_dir: str | Path) -> Iterator[dict]:
    """The rows of a bench run's ``questions.jsonl``; ``DatasetError`` when the run has none."""
    path = Path(bench_dir) / "questions.jsonl"
    if not path.is_file():
        raise DatasetError(f"{path} does not exist: run the bench over train questions first")
    for line in path.read_text().splitlines():
        yield json.loads(line)


def search_examples(bench_dir: str | Path, fmt: str, max_per_question: int = 4) -> tuple[list[SFTExample], dict]:
    """Correct samples from a bench run's traces (``questions.jsonl`` + ``traces/``), at most
    ``max_per_question`` distinct ones per question. Returns the examples and counts."""
    from reasonflow.data import DATASETS
    from reasonflow.trace import Trace

    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; known: {sorted(FORMATS)}")
    bench_dir = Path(bench_dir)
    kept, counts = [], Counter()
    for row in bench_rows(bench_dir):
        counts["questions"] += 1
        if not row.get("trace"):
            counts["no_trace"] += 1
            continue
        kind = DATASETS[row["dataset"]].kind
        graph = Trace.load(bench_dir / row["trace"]).graph
        seen: set[str] = set()
        for _, attrs in graph.nodes(data=True):
            text, answer = str(attrs.get("text") or "").strip(), attrs.get("answer")
            if answer in (None, "") or not text or attrs.get("reason"):
                continue
            counts["samples"] += 1
            if not check(kind, answer, row["gold"]):
                continue
            key = re.sub(r"\s+", " ", text)
            if key in seen or len(seen) >= max_per_question:
                counts["duplicates_or_over_cap"] += 1
                continue
            seen.add(key)
            outputs = {"code": text} if fmt == "pot" else {"reasoning": text, "answer": str(answer)}
            kept.append(SFTExample(row["id"], f"search:{row['program']}", fmt, row["question"], outputs))
        counts["questions_with_a_correct_sample"] += bool(seen)
    counts["kept"] = len(kept)
    return kept, dict(counts)


@functools.lru_cache(maxsize=None)
def _signature(fmt: str):
    """The signature the registered program's predictor calls the model with (built once per
    format: ``render`` runs for every training example)."""
    from reasonflow.registry import get_program

    name, _, predictor = FORMATS[fmt].partition("/")
    predictors = dict(get_program(name).named_predictors())
    return (predictors[predictor] if predictor else next(iter(predictors.values()))).signature


def _max_chars(fmt: str) -> dict[str, int]:
    from reasonflow.adapter import bounded_schema

    props = bounded_schema(_signature(fmt))["properties"]
    return {name: prop["maxLength"] for name, prop in props.items() if "maxLength" in prop}


def prompt_messages(example: SFTExample, adapter=None) -> list[dict]:
    """The [system, user] messages inference sends for ``example`` (``StructuredAdapter()`` by
    default, ``CompactAdapter()`` for the compact format)."""
    from reasonflow.adapter import StructuredAdapter

    return (adapter or StructuredAdapter()).format(_signature(example.format), [], example.prompt_inputs())


def render(example: SFTExample, adapter=None) -> dict:
    """``{"prompt": [system, user], "completion": [assistant]}`` exactly as inference prompts (with
    ``adapter``: ``StructuredAdapter()`` by default, ``CompactAdapter()`` for the compact format)."""
    signature = _signature(example.format)
    messages = prompt_messages(example, adapter)
    content = json.dumps({name: example.outputs[name] for name in signature.output_fields},
                         ensure_ascii=False, separators=(",", ":"))
    return {"prompt": messages, "completion": [{"role": "assistant", "content": content}]}
