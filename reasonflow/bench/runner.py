"""``run_bench``: run programs over a dataset with the engine kept busy, and write every output file.

    from reasonflow.bench import run_bench
    results = run_bench(["cot", "sc@4"], "gsm8k", limit=50, out_dir="runs/x", base_url=URL)

Programs run one after another; within a program up to ``concurrency`` questions are in flight
(asyncio + a semaphore), with a tqdm bar showing questions done, accuracy so far and tok/s. Around
each program the engine's /metrics are scraped (prefix-cache hit rate). After all of them the engine's
peak completion tok/s is measured with ``peak_throughput`` at each program's own cap: concurrency ×
the program's width (sequences one question keeps in flight: k for SC, breadth × proposals for ToT),
since one request with n=k keeps k sequences busy. Utilisation is achieved ÷ that peak. With ``lm=``
given (a ScriptedLM in tests) no engine is touched and those figures are null.

Not guaranteed: a program rarely holds its full width for the whole run (votes, answers and short
frontiers are narrower), and engine figures are engine-wide: other clients' traffic on a shared
server is counted too.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from reasonflow import data
from reasonflow.bench import lm_eval, provenance, report
from reasonflow.bench.engine_metrics import hit_rate, measure_peak, scrape
from reasonflow.bench.shards import Shard
from reasonflow.bench.rows import DEFAULT_HTML_TRACES, DEFAULT_QUESTION_TIMEOUT_S, RowStore, ask, finish, program_names
from reasonflow.config import DEFAULT_CONCURRENCY
from reasonflow.errors import ConfigError
from reasonflow.artifact import program as get_program
from reasonflow.search.base import run_sync

MAX_CONCURRENCY = 1024  # questions in flight at once (each may send n samples per request)


MAX_PEAK_SEQUENCES = 128  # the largest cap a peak is measured at (the engine saturates well below)


@dataclass
class Session:
    """This session's run of one program: its new rows, their wall time and the cache hit rate."""

    rows: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    prefix_cache_hit_rate: float | None = None
    peak: object | None = None  # engine peak at this program's cap (concurrency x width)


def run_bench(programs: str | Iterable[str], dataset: str, *, split: str = "test", limit: int | None = None,
              offset: int = 0, seed: int | None = None, data_dir=None, base_url: str | None = None,
              model: str | None = None, concurrency: int = DEFAULT_CONCURRENCY, out_dir="runs/bench",
              resume: bool = False, lm=None, html_traces: int = DEFAULT_HTML_TRACES,
              question_timeout_s: float = DEFAULT_QUESTION_TIMEOUT_S, progress: bool = True,
              options: dict | None = None, revision: str | None = None, api_key: str | None = None,
              command: str | list[str] | None = None, lm_eval_out=None, shard=None) -> dict:
    """Run ``programs`` over ``dataset`` and write questions.jsonl, results.json, results.md, the plot
    and traces into ``out_dir``. Returns the results.json content (with ``table``, the markdown).
    ``options`` go to every program (``-o``); results.json's ``provenance`` records ``command``
    (default: this process's argv) among the rest (``reasonflow.bench.provenance``); ``lm_eval_out``
    also writes lm-evaluation-harness's layout (``reasonflow.bench.lm_eval``). ``shard`` ("i/N" or a
    ``Shard``) runs only that shard's slice of the questions (``reasonflow.bench.shards``)."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ConfigError(f"concurrency must be in 1..{MAX_CONCURRENCY} (MAX_CONCURRENCY), got {concurrency}")
    if question_timeout_s <= 0 or html_traces < 0:
        raise ConfigError("question_timeout_s must be > 0 and html_traces >= 0")
    started = provenance.start()
    shard = Shard.parse(shard)
    names = program_names(programs, dataset)
    plan = {name: get_program(name, **(options or {})) for name in names}  # unknown names fail before any LM call
    examples = data.load(dataset, split=split, data_dir=data_dir, limit=limit, offset=offset, seed=seed,
                         revision=revision)
    source = data.source(dataset, split=split, data_dir=data_dir, revision=revision)
    total = len(examples)
    indexed = list(enumerate(examples))  # a row keeps its index in the unsharded list
    if shard is not None:
        indexed = shard.select(indexed)
        examples = [ex for _, ex in indexed]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = RowStore(out / "questions.jsonl", resume)  # refuses to overwrite before any engine is touched
    measure = lm is None
    try:
        if lm is None:
            from reasonflow.lm import connect

            lm = connect(base_url, model, api_key=api_key)
        sessions, peak = run_sync(_bench(plan, indexed, lm, store, out, concurrency, measure, html_traces,
                                         question_timeout_s, progress))
    finally:
        store.close()
    ids = [ex.id for ex in examples]
    rows = {name: [store.rows[(name, i)] for i in ids if (name, i) in store.rows] for name in plan}
    results = {
        "dataset": dataset, "split": split, "limit": limit, "offset": offset, "seed": seed,
        "questions": len(examples), "base_url": getattr(lm, "base_url", None),
        "model": getattr(lm, "served_model", None), "concurrency": concurrency,
        "peak": peak.to_dict() if peak else None,
        "results": [report.summarise(name, dataset, rows[name], sessions[name], sessions[name].peak)
                    for name in plan],
        "resumed": resume,
        "shard": None if shard is None else {"index": shard.index, "count": shard.count, "total": total, "ids": ids},
        "provenance": provenance.collect(lm, plan, source, command=command, started=started),
    }
    part = f", shard {shard}" if shard is not None else ""
    table = report.write(out, results, f"{dataset} ({split}, {len(examples)} questions{part})")
    if lm_eval_out is not None:
        results["lm_eval_path"] = str(lm_eval.write(results, lm_eval_out))
    return {**results, "table": table}


async def _bench(plan, indexed, lm, store, out, concurrency, measure, html_traces, timeout_s, progress):
    sessions: dict[str, Session] = {}
    for name, program in plan.items():
        todo = [(i, ex) for i, ex in indexed if (name, ex.id) not in store.rows]
        before = await scrape(lm.base_url, getattr(lm, "api_key", None)) if measure and todo else None
        started = time.perf_counter()
        new_rows = await _run_program(name, program, todo, lm, store, out, concurrency, html_traces, timeout_s,
                                      progress)
        session = Session(new_rows, time.perf_counter() - started)
        if before is not None:
            session.prefix_cache_hit_rate = hit_rate(before, await scrape(lm.base_url, getattr(lm, "api_key", None)))
        sessions[name] = session
    peaks: dict[int, object] = {}
    for name, program in plan.items():  # the peak at each program's own cap: concurrency x its width
        cap = min(concurrency * _width(program), MAX_PEAK_SEQUENCES)
        if measure and sessions[name].rows and cap not in peaks:
            peaks[cap] = await measure_peak(lm.base_url, cap, lm.served_model, getattr(lm, "api_key", None))
        sessions[name].peak = peaks.get(cap)
    measured = [p for p in peaks.values() if p is not None]  # a failed measurement is None
    return sessions, max(measured, key=lambda p: p.concurrency, default=None)


def _width(program) -> int:
    width = getattr(program, "width", None)
    return width() if callable(width) else 1


async def _run_program(name, program, todo, lm, store, out, concurrency, html_traces, timeout_s, progress):
    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(todo), desc=name, unit="q", disable=not progress or not todo, dynamic_ncols=True)
    done = {"questions": 0, "correct": 0, "tokens": 0}
    started = time.perf_counter()

    async def one(index, example):
        async with gate:
            outcome = await ask(program, example.question, lm, timeout_s)

        def finish_and_store() -> dict:
            row = finish(name, program, index, example, outcome, out, html_traces)
            store.append(row)
            return row

        # Scored and stored in a worker thread: a Ctrl-C cancels this coroutine (asyncio.run's shutdown
        # cancels it once more), but the answer is paid for, and asyncio.run joins its worker threads
        # before it returns, so the row is written all the same.
        row = await asyncio.to_thread(finish_and_store)
        done["questions"] += 1
        done["correct"] += row["correct"]
        done["tokens"] += row["completion_tokens"]
        bar.update(1)
        bar.set_postfix(acc=f"{done['correct'] / done['questions']:.1%}",
                        tok_s=f"{done['tokens'] / max(time.perf_counter() - started, 1e-9):.1f}")
        return row

    try:
        return list(await asyncio.gather(*(one(i, ex) for i, ex in todo)))
    finally:
        bar.close()
