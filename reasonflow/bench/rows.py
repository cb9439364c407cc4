"""One bench row per (program, question): run it, score it, save its trace, append it to the JSONL file.

``ask`` runs one question and turns every exception into an error type; ``finish`` scores the outcome
with ``reasonflow.checking`` (for game24 the puzzle is the gold), writes the trace (HTML too for the
first few questions) and builds the row; ``RowStore`` appends and flushes each row the moment it is
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

import dspy

from reasonflow.adapter import StructuredAdapter
from reasonflow.checking import check
from reasonflow.errors import ConfigError, ReasonflowError
from reasonflow.trace import Trace
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


@dataclass
class Outcome:
    """What one ``acall`` gave: the prediction or the error, and the usage of every call it made."""

    pred: Any
    error: str | None
    message: str
    usage: dict
    latency_s: float


async def ask(program, question: str, lm, timeout_s: float) -> Outcome:
    """Run one question; every exception becomes an error type (the bench never stops for one)."""
    started = time.perf_counter()
    pred, error, message = None, None, ""
    with track_usage() as usage:
        try:
            with dspy.context(lm=lm, adapter=StructuredAdapter()):
                pred = await asyncio.wait_for(program.acall(question=question), timeout_s)
        except asyncio.TimeoutError:
            error, message = "QuestionTimeout", f"no answer within {timeout_s:g} s (question timeout)"
        except Exception as exc:  # ParseError, TruncatedError, LMTimeoutError, ... : a failed question
            error, message = type(exc).__name__, str(exc)
    return Outcome(pred, error, message[:MAX_ERROR_CHARS], usage.to_dict(), time.perf_counter() - started)


def error_type(outcome: Outcome) -> str | None:
    """The raised exception's class; else the strategy's ``error`` ("ParseError: ..." -> "ParseError");
    else "budget_exhausted" or "no_answer" when the answer is missing; None for a usable answer."""
    if outcome.error:
        return outcome.error
    pred = outcome.pred
    reported = getattr(pred, "error", None)
    if reported:
        name = str(reported).split(":", 1)[0].strip()
        return name if name.isidentifier() else "error"
    if not _usable(getattr(pred, "answer", None)):
        return "budget_exhausted" if getattr(pred, "budget_exhausted", False) else "no_answer"
    return None


def _usable(answer) -> bool:
    return answer is not None and str(answer).strip() != ""


def _plain(value):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _correct(kind: str, answer, gold) -> bool:
    if not _usable(answer):
        return False
    try:
        return bool(check(kind, answer, gold))
    except Exception as exc:  # a checker failure scores the answer wrong, it does not stop the run
        log.warning("checker %s failed on %r: %s", kind, answer, exc)
        return False


def finish(name: str, program, index: int, example, outcome: Outcome, out: Path, html_traces: int) -> dict:
    """Score one outcome, save its trace (and HTML for the first few), and build its row.
    Runs in a worker thread: Math-Verify checks block."""
    pred, kind = outcome.pred, example.kind
    gold = example.question if kind == "game24" else example.answer
    answer = getattr(pred, "answer", None)
    error = error_type(outcome)
    row = {"program": name, "dataset": example.dataset, "id": example.id, "index": index,
           "question": example.question, "gold": example.answer, "prediction": _plain(answer),
           "reasoning": str(getattr(pred, "reasoning", "") or "")[:MAX_REASONING_CHARS],
           "correct": error is None and _correct(kind, answer, gold), "error": error,
           "error_message": outcome.message or str(getattr(pred, "error", "") or "")[:MAX_ERROR_CHARS] or None,
           **{key: outcome.usage.get(key, 0) for key in ("prompt_tokens", "completion_tokens", "cached_tokens")},
           "lm_calls": outcome.usage.get("calls", 0), "latency_s": round(outcome.latency_s, 3),
           "budget_exhausted": bool(getattr(pred, "budget_exhausted", False)), "k": None, "samples": None,
           "samples_correct": None, "trace": None}
    k = getattr(program, "k", None)
    if isinstance(k, int):  # a sampling program (SC): pass@k over its samples
        samples = list(getattr(pred, "samples", None) or [])
        row.update(k=k, samples=_plain(samples), samples_correct=sum(_correct(kind, s, gold) for s in samples))
    selections = getattr(pred, "selections", None)
    if isinstance(selections, dict):  # several selection rules over the same samples (PoT@k)
        row["selections"] = {rule: _plain(a) for rule, a in selections.items()}
        row["selections_correct"] = {rule: error is None and _correct(kind, a, gold) for rule, a in selections.items()}
    trace = getattr(pred, "trace", None)
    if not hasattr(trace, "save"):  # the program raised or kept no trace: record what happened
        note = row["error_message"] or error or f"answer {row['prediction']!r} (the program kept no trace)"
        trace = _failure_trace(name, example.question, note, outcome.usage)
    rel = Path("traces") / slug(name) / f"{slug(example.id)}.json"
    try:
        trace.save(out / rel)
        if index < html_traces:
            trace.to_html((out / rel).with_suffix(".html"))
        row["trace"] = rel.as_posix()
    except ReasonflowError as exc:  # an unsavable trace loses the trace, not the row
        log.warning("could not save the trace of %s %s: %s", name, example.id, exc)
    return row


def _failure_trace(name: str, question: str, message: str, usage: dict) -> Trace:
    """A two-node trace (question -> pruned error) for a question whose program left none."""
    trace = Trace(program=name, strategy="failed", question=question)
    root = trace.add_node(text=question, status="expanded")
    trace.add_node(text=message, parent=root, status="pruned", action="error")
    trace.finish(answer=None, usage=usage)
    return trace
