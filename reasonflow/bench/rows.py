"""One bench row per (program, question): run it, score it, save its trace, append it to the JSONL file.

``ask`` runs one question and keeps any exception; ``finish`` reads the run's typed ``Result`` (its
answer, samples, error class and budget state: fields, never strings), scores it with
``reasonflow.checking`` (for game24 the puzzle is the gold), writes the trace (HTML too for the first few
questions) and builds the row; ``RowStore`` appends and flushes each row the moment it is
done, and on resume reads them back (a row cut off by a crash is dropped and run again).
``program_names`` turns short names into registry names with the dataset's task prefix.

Not guaranteed: the checker kind is the dataset's (its gold format), whatever the program's task; a
checker that raises scores the answer wrong (logged), it does not stop the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from reasonflow.checking import check, usable
from reasonflow.errors import ConfigError, ReasonflowError
from reasonflow.lm import session
from reasonflow.result import Result, plain
from reasonflow.usage import track_usage

log = logging.getLogger(__name__)

PROGRAM_PREFIX = {"gsm8k": "gsm8k", "svamp": "gsm8k", "multiarith": "gsm8k", "mgsm_ru": "gsm8k",
                  "mgsm_en": "gsm8k", "math500": "math", "aime24": "math", "game24": "game24"}
DEFAULT_QUESTION_TIMEOUT_S = 900.0  # outer bound per question (a search's own deadline is 600 s)
DEFAULT_HTML_TRACES = 3  # questions per program that also get an HTML trace viewer
MAX_REASONING_CHARS = 2000  # reasoning text kept in a row (the trace keeps the rest)
MAX_ERROR_CHARS = 300


def program_names(programs: str | Iterable[str], dataset: str) -> list[str]:
    """Registry names for ``programs`` ("cot,sc@4" or a list): short names get the dataset's prefix;
    dotted names and ``.json`` artifacts pass through. Duplicates are dropped."""
    if dataset not in PROGRAM_PREFIX:
        raise ConfigError(f"unknown dataset {dataset!r}; known: {sorted(PROGRAM_PREFIX)}")
    items = programs.split(",") if isinstance(programs, str) else list(programs)
    names: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        name = item if item.endswith(".json") or "." in item.partition("@")[0] else f"{PROGRAM_PREFIX[dataset]}.{item}"
        if name not in names:
            names.append(name)
    if not names:
        raise ConfigError("no programs given; pass e.g. --programs cot,sc@4")
    return names


def slug(text: str) -> str:
    return re.sub(r"[^\w.@-]+", "_", text).strip("_") or "_"


class RowStore:
    """``questions.jsonl`` keyed by (program, question id). Rows are appended and flushed one by one."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.rows: dict[tuple[str, str], dict] = {}
        if path.is_file() and path.stat().st_size:
            if not resume:
                raise ConfigError(f"{path} already holds results; pass --resume to continue that run "
                                  "or choose another --out")
            self._load()
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def _load(self) -> None:
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):  # a row cut off by a crash: drop it, it is run again
            data = data[: data.rfind(b"\n") + 1]
            self.path.write_bytes(data)
        for number, line in enumerate(data.splitlines(), 1):
            try:
                row = json.loads(line)
                self.rows[(row["program"], row["id"])] = row
            except (ValueError, KeyError, TypeError):
                log.warning("%s line %d is not a result row; that question runs again", self.path, number)

    def append(self, row: dict) -> None:
        """Write one row; called from the bench's worker threads."""
        with self._lock:
            self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
            self._file.flush()
            self.rows[(row["program"], row["id"])] = row

    def close(self) -> None:
        self._file.close()


class QuestionTimeout(ReasonflowError):
    """A question ran past the bench's own per-question bound (``--question-timeout``)."""


@dataclass
class Outcome:
    """What one ``acall`` gave: the prediction, or the exception it raised, and the usage of every call."""

    pred: Any
    error: BaseException | None
    usage: dict
    latency_s: float


async def ask(program, question: str, lm, timeout_s: float) -> Outcome:
    """Run one question; an exception is kept as the outcome's error (the bench never stops for one)."""
    started = time.perf_counter()
    pred, error = None, None
    with track_usage() as usage:
        try:
            with session(lm):
                pred = await asyncio.wait_for(program.acall(question=question), timeout_s)
        except asyncio.TimeoutError:
            error = QuestionTimeout(f"no answer within {timeout_s:g} s (question timeout)")
        except Exception as exc:  # ParseError, TruncatedError, LMTimeoutError, ... : a failed question
            error = exc
    return Outcome(pred, error, usage.to_dict(), time.perf_counter() - started)


def error_type(result: Result) -> str | None:
    """The error's class name (raised, or reported by the strategy); else "budget_exhausted" or
    "no_answer" when the answer is missing; None for a usable answer."""
    if result.error is not None:
        return type(result.error).__name__
    if result.answer is None:
        return "budget_exhausted" if result.budget_exhausted else "no_answer"
    return None


def _correct(kind: str, answer, gold) -> bool:
    if not usable(answer):
        return False
    try:
        return bool(check(kind, answer, gold))
    except Exception as exc:  # a checker failure scores the answer wrong, it does not stop the run
        log.warning("checker %s failed on %r: %s", kind, answer, exc)
        return False


def finish(name: str, program, index: int, example, outcome: Outcome, out: Path, html_traces: int) -> dict:
    """Score one outcome, save its trace (and HTML for the first few), and build its row from the
    run's typed ``Result``. Runs in a worker thread: Math-Verify checks block."""
    kind = example.kind
    gold = example.question if kind == "game24" else example.answer
    result = Result.of(outcome.pred, program=name, question=example.question, usage=outcome.usage,
                       error=outcome.error)
    error = error_type(result)
    row = {"program": name, "dataset": example.dataset, "id": example.id, "index": index,
           "question": example.question, "gold": example.answer, "prediction": plain(result.answer),
           "reasoning": result.reasoning[:MAX_REASONING_CHARS],
           "correct": error is None and _correct(kind, result.answer, gold), "error": error,
           "error_message": str(result.error)[:MAX_ERROR_CHARS] if result.error is not None else None,
           **{key: outcome.usage.get(key, 0) for key in ("prompt_tokens", "completion_tokens", "cached_tokens")},
           "lm_calls": outcome.usage.get("calls", 0), "latency_s": round(outcome.latency_s, 3),
           "budget_exhausted": result.budget_exhausted, "k": None, "samples": None,
           "samples_correct": None, "trace": None}
    if result.samples:  # a sampling program (SC, PoT): pass@k over its samples
        row.update(k=len(result.samples), samples=plain(result.samples),
                   samples_correct=sum(_correct(kind, s, gold) for s in result.samples))
    if result.selections:  # several selection rules over the same samples (PoT@k)
        row["selections"] = {rule: plain(a) for rule, a in result.selections.items()}
        row["selections_correct"] = {rule: error is None and _correct(kind, a, gold)
                                     for rule, a in result.selections.items()}
    rel = Path("traces") / slug(name) / f"{slug(example.id)}.json"
    try:
        result.trace.save(out / rel)
        if index < html_traces:
            result.trace.to_html((out / rel).with_suffix(".html"))
        row["trace"] = rel.as_posix()
    except ReasonflowError as exc:  # an unsavable trace loses the trace, not the row
        log.warning("could not save the trace of %s %s: %s", name, example.id, exc)
    return row
