"""reasonflow.bench: run programs over a math benchmark concurrently and measure them.

What it does: ``run_bench(programs, dataset, ...)`` runs every program over every question with the
engine kept saturated, checks answers with ``reasonflow.checking`` (Math-Verify for LaTeX), and writes
into ``out_dir``: ``questions.jsonl`` (one row per question and program, appended as each finishes),
``results.json`` (accuracy with a 95% Wilson interval, maj@k/pass@k, tokens, LM calls, wall time,
tok/s, engine utilisation, prefix-cache hit rate), ``results.md``, ``accuracy_vs_tokens.png`` and
``traces/`` (trace.json per question, HTML for the first few). results.json's ``provenance`` records
what produced the run (``provenance``: date, versions, git commit, model, dataset hash or revision,
program settings, command line); ``lm_eval_out=`` also writes lm-evaluation-harness's layout (``lm_eval``).

How to run::

    python evals/math_bench.py --dataset gsm8k --limit 50 --programs cot,sc@4 --out runs/x
    reasonflow bench --dataset math500 --limit 20 --programs cot --base-url http://host:8000/v1
    reasonflow bench ... --shard 0/2 --out runs/s0; reasonflow bench merge runs/all runs/s0 runs/s1
    reasonflow bench ... --ray --shards 4 --base-url URL --out runs/all      # shards as Ray tasks

``shards`` has the shard slices and ``merge``; ``cluster`` runs the shards as Ray tasks (the ray extra).

What it does not guarantee: accuracy intervals cover question sampling only; engine figures (tok/s,
utilisation, cache hit rate) are for this session's new questions and are engine-wide, so other
clients of a shared server disturb them. See ``runner`` and ``rows`` for the details.
"""

from reasonflow.bench.cli import build_parser, main, register_cli
from reasonflow.bench.rows import PROGRAM_PREFIX, program_names
from reasonflow.bench.runner import run_bench
from reasonflow.bench.stats import pass_at_k, wilson_interval

__all__ = ["PROGRAM_PREFIX", "build_parser", "main", "pass_at_k", "program_names", "register_cli", "run_bench",
           "wilson_interval"]
