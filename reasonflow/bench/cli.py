"""The bench's command line, shared by ``evals/math_bench.py`` and ``reasonflow bench``.

    python evals/math_bench.py --dataset gsm8k --limit 50 --programs cot,sc@4 --out runs/x [--base-url URL]
    python evals/math_bench.py ... --resume          # continue an interrupted run in the same --out
    python evals/math_bench.py ... --shard 0/2 --out runs/s0    # one shard; then:
    reasonflow bench merge runs/all runs/s0 runs/s1  # (or: python evals/math_bench.py merge ...)
    reasonflow bench ... --ray --shards 4 --base-url URL      # the shards as Ray tasks, merged at the end
    reasonflow bench --dataset gsm8k --programs sc@4 -o temperature=0.5 --lm-eval-out runs/lm-eval

``build_parser()`` is the standalone parser, ``register_cli(subparsers)`` adds the same arguments as a
``bench`` subcommand, and ``main(argv)`` runs and prints the results table. ``merge_main(argv)`` is
``bench merge OUT SHARD_DIR...`` (``reasonflow.bench.shards``; ``reasonflow.cli`` routes to it).
Errors from reasonflow print as one line (``error: ...``, exit 2); Ctrl-C exits 130 with every finished
question kept on disk.
"""

from __future__ import annotations

import argparse
import sys

from reasonflow.bench.rows import DEFAULT_HTML_TRACES, DEFAULT_QUESTION_TIMEOUT_S
from reasonflow.config import DEFAULT_CONCURRENCY
from reasonflow.data import DATASETS
from reasonflow.errors import ConfigError, cli_main

DESCRIPTION = ("Run reasoning programs over a math benchmark and report accuracy, tokens and engine use. "
               "`bench merge OUT SHARD_DIR...` merges the --out directories of a sharded run (--shard i/N).")


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
    parser.add_argument("--shard", metavar="I/N",
                        help="run only shard I of N (0-based: questions I, I+N, ...); merge the shards' --out "
                             "directories with `bench merge OUT DIR...`")
    parser.add_argument("--ray", action="store_true",
                        help="run --shards shards as Ray tasks (a local Ray cluster unless --ray-address) "
                             "against the same --base-url, and merge them into --out (needs the ray extra)")
    parser.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (e.g. auto); implies --ray")
    parser.add_argument("--shards", type=int, help="shards (Ray tasks) for --ray")
    return parser


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="math_bench", description=DESCRIPTION))


def cmd_bench(args: argparse.Namespace) -> int:
    from reasonflow.bench.runner import run_bench
    from reasonflow.options import parse_pairs

    options = parse_pairs(args.option)
    kwargs = dict(split=args.split, limit=args.limit, offset=args.offset, seed=args.seed, data_dir=args.data_dir,
                  base_url=args.base_url, model=args.model, concurrency=args.concurrency, out_dir=args.out,
                  resume=args.resume, html_traces=args.html_traces, question_timeout_s=args.question_timeout,
                  progress=not args.quiet, options=options, revision=args.revision, api_key=args.api_key,
                  command=getattr(args, "command_line", None))
    ray = args.ray or args.ray_address is not None
    if ray and (args.shard or args.lm_eval_out):
        raise ConfigError("--ray makes its own shards and merges them: drop --shard and --lm-eval-out")
    if (args.shards is not None) != ray:
        raise ConfigError("--ray (or --ray-address) and --shards N go together")
    try:
        if ray:
            from reasonflow.bench.cluster import run_ray

            results = run_ray(args.programs, args.dataset, shards=args.shards, ray_address=args.ray_address,
                              **kwargs)
        else:
            results = run_bench(args.programs, args.dataset, shard=args.shard, lm_eval_out=args.lm_eval_out,
                                **kwargs)
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


def build_merge_parser(prog: str = "math_bench merge") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Merge the --out directories of a sharded bench "
                                     "(--shard i/N) into one run: results.json, results.md, the plot, questions.jsonl.")
    parser.add_argument("out", help="output directory for the merged run")
    parser.add_argument("shard_dirs", nargs="+", metavar="SHARD_DIR", help="every shard's --out directory")
    parser.set_defaults(func=cmd_merge)
    return parser


def cmd_merge(args: argparse.Namespace) -> int:
    from reasonflow.bench.shards import merge

    results = merge(args.out, args.shard_dirs, command=getattr(args, "command_line", None))
    print(results["table"])
    print(f"\nmerged {len(args.shard_dirs)} shards ({results['questions']} questions); wrote {args.out}/results.json, "
          "results.md, questions.jsonl, accuracy_vs_tokens.png, traces/")
    return 0


def merge_main(argv: list[str], prog: str = "math_bench merge", command: str | None = None) -> int:
    """``bench merge OUT SHARD_DIR...``."""
    import shlex

    args = build_merge_parser(prog).parse_args(argv)
    args.command_line = command or shlex.join([*prog.split(), *argv])
    return cli_main(cmd_merge, args)


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["merge"]:
        return merge_main(given[1:])
    args = build_parser().parse_args(argv)
    if argv is not None:  # called from Python: record these arguments, not the calling process's
        import shlex

        args.command_line = shlex.join(["math_bench", *argv])
    return cli_main(cmd_bench, args)
