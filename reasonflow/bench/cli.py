"""The bench's command line, shared by ``evals/math_bench.py`` and ``reasonflow bench``.

    python evals/math_bench.py --dataset gsm8k --limit 50 --programs cot,sc@4 --out runs/x [--base-url URL]
    python evals/math_bench.py ... --resume          # continue an interrupted run in the same --out
    reasonflow bench --dataset gsm8k --programs sc@4 -o temperature=0.5 --lm-eval-out runs/lm-eval

``build_parser()`` is the standalone parser, ``register_cli(subparsers)`` adds the same arguments as a
``bench`` subcommand, and ``main(argv)`` runs and prints the results table. Errors from reasonflow print
as one line (``error: ...``, exit 2); Ctrl-C exits 130 with every finished question kept on disk.
"""

from __future__ import annotations

import argparse
import sys

from reasonflow.bench.rows import DEFAULT_HTML_TRACES, DEFAULT_QUESTION_TIMEOUT_S
from reasonflow.config import DEFAULT_CONCURRENCY
from reasonflow.data import DATASETS
from reasonflow.errors import cli_main

DESCRIPTION = "Run reasoning programs over a math benchmark and report accuracy, tokens and engine use."


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--programs", default="cot",
                        help="comma-separated registry names or compiled .json artifacts; short names get the "
                             "dataset's task prefix (cot -> gsm8k.cot, sc@4 -> gsm8k.sc@4)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, help="questions to run (default: all)")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--seed", type=int, help="shuffle the questions with this seed before offset/limit")
    parser.add_argument("--data-dir", help="local benchmark files (default: REASONFLOW_DATA_DIR, else the hub)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint (default: the embedded engine)")
    parser.add_argument("--model", help="served model or LoRA adapter name (default: the first served)")
    parser.add_argument("--api-key", help="the endpoint's API key (default: REASONFLOW_API_KEY)")
    parser.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                        help="option for every program in --programs, e.g. -o temperature=0.5 (repeatable)")
    parser.add_argument("--revision",
                        help="hub dataset revision (commit, tag or branch) to load; recorded in results.json")
    parser.add_argument("--lm-eval-out", metavar="PATH",
                        help="also write the results in lm-evaluation-harness's layout (a .json file or a directory)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="questions in flight")
    parser.add_argument("--out", default="runs/bench", help="output directory")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out; finished questions are kept")
    parser.add_argument("--html-traces", type=int, default=DEFAULT_HTML_TRACES,
                        help="questions per program that also get an HTML trace")
    parser.add_argument("--question-timeout", type=float, default=DEFAULT_QUESTION_TIMEOUT_S,
                        help="seconds one question may take before it counts as QuestionTimeout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="math_bench", description=DESCRIPTION))


def cmd_bench(args: argparse.Namespace) -> int:
    from reasonflow.bench.runner import run_bench
    from reasonflow.options import parse_pairs

    options = parse_pairs(args.option)
    try:
        results = run_bench(args.programs, args.dataset, split=args.split, limit=args.limit, offset=args.offset,
                            seed=args.seed, data_dir=args.data_dir, base_url=args.base_url, model=args.model,
                            concurrency=args.concurrency, out_dir=args.out, resume=args.resume,
                            html_traces=args.html_traces, question_timeout_s=args.question_timeout,
                            progress=not args.quiet, options=options, revision=args.revision,
                            api_key=args.api_key, command=getattr(args, "command_line", None),
                            lm_eval_out=args.lm_eval_out)
    except KeyboardInterrupt:
        print(f"interrupted: finished questions are in {args.out}/questions.jsonl; "
              "rerun with --resume to continue", file=sys.stderr)
        return 130
    print(results["table"])
    peak = results["peak"]
    if peak:
        print(f"\npeak at concurrency {peak['concurrency']}: {peak['tok_s']} tok/s")
    print(f"wrote {args.out}/results.json, results.md, questions.jsonl, accuracy_vs_tokens.png, traces/")
    if results.get("lm_eval_path"):
        print(f"wrote {results['lm_eval_path']} (lm-evaluation-harness layout)")
    return 0


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``bench`` to a ``reasonflow`` CLI's subparsers (``args.func(args)`` runs it)."""
    parser = subparsers.add_parser("bench", help="run programs over a math benchmark", description=DESCRIPTION)
    add_arguments(parser).set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is not None:  # called from Python: record these arguments, not the calling process's
        import shlex

        args.command_line = shlex.join(["math_bench", *argv])
    return cli_main(cmd_bench, args)
