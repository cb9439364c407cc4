"""The ``reasonflow`` command line: ``engine``, ``run``, ``bench``, ``compile``, ``serve``, ``finetune``, ``merge``,
``trace``.

    reasonflow engine up [--model smollm2-135m|DIR] [--lora NAME=DIR ...] [--replicas N] [-- VLLM_ARGS ...]
    reasonflow engine status          # exit 1 when no engine (or not every replica) answers
    reasonflow engine down
    reasonflow bench --dataset gsm8k --programs cot --shard 0/2 --out runs/s0   |  reasonflow bench merge OUT DIR...
    reasonflow run gsm8k.tot --question "..." [-o breadth=5] [--base-url URL] [--api-key KEY] [--trace-out DIR]
    reasonflow programs [--json]      # every registered program with its options, their defaults and ranges
    reasonflow --version
    reasonflow trace show trace.json  |  reasonflow trace html trace.json -o trace.html
    reasonflow finetune --out programs/adapters/NAME [--gold pot=640 --gold cot=160] [--search gsm8k.pot@8=200]
    reasonflow finetune --out DIR --gold pot=all --augment 2 --epochs 2 --prompt-format compact --dev 50 --snapshot-steps 250
    reasonflow merge programs/adapters/NAME --out DIR   # then: reasonflow engine up --model DIR

Client commands (``run``, ``bench``, ``compile``) take ``--api-key`` for an endpoint that wants one
(default: the ``REASONFLOW_API_KEY`` environment variable, which keeps it out of the process list).
Each subcommand is a thin layer over the library; errors from reasonflow print as one line
(``error: ...``) with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys

from reasonflow.config import EngineConfig
from reasonflow.errors import ConfigError, EngineNotRunning, cli_main


def _lora_pairs(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--lora takes NAME=DIR, got {value!r}")
        pairs.append((name, path))
    return tuple(pairs)


def cmd_engine(args) -> int:
    from reasonflow import engine

    if args.action != "up" and (args.vllm_args or args.replicas != 1):
        raise ConfigError("--replicas and vLLM arguments after `--` go with `engine up`, "
                          f"not `engine {args.action}`")
    if args.action == "up":
        config = EngineConfig(model=args.model, port=args.port, lora=_lora_pairs(args.lora),
                              start_timeout_s=args.timeout, extra_args=tuple(args.vllm_args))
        state, started = engine.up(config, replicas=args.replicas)
        pids = ", ".join(str(m.pid) for m in state.members())
        print(f"{'started' if started else 'reusing'} engine pid {pids} ({state.served_model})", file=sys.stderr)
        print(f"base_url: {state.base_url}")
        return 0
    if args.action == "status":
        try:
            state = engine.status()
        except EngineNotRunning as exc:
            print(f"down: {exc}")
            return 1
        members = state.members()
        ready = [m.ready(state.served_model) for m in members]
        print(f"{'up' if all(ready) else 'degraded'}: pid {state.pid} model {state.served_model} "
              f"adapters {list(state.lora)} replicas {sum(ready)}/{len(members)} answering")
        print(f"base_url: {state.base_url}")
        for i, (member, ok) in enumerate(zip(members, ready)):
            cpus = ",".join(map(str, member.cpus)) or "any"
            print(f"replica {i}: {'up' if ok else 'down'} pid {member.pid} cpus {cpus} {member.base_url} "
                  f"log {member.log_path}")
        return 0 if all(ready) else 1
    state = engine.down()
    print(f"stopped engine pid {', '.join(str(m.pid) for m in state.members())}" if state else "no engine was up")
    return 0


def _options(pairs: list[str] | None) -> dict:
    """``-o k=8 -o temperature=0.5`` -> {"k": 8, "temperature": 0.5} (JSON values, else strings)."""
    from reasonflow.options import parse_pairs

    return parse_pairs(pairs)


def cmd_run(args) -> int:
    import json
    from pathlib import Path

    from reasonflow.artifact import program as get_program
    from reasonflow.lm import connect, session

    program = get_program(args.program, **_options(args.option))
    lm = connect(args.base_url, args.model, api_key=args.api_key)
    with session(lm):
        pred = program(question=args.question)
    print(f"answer: {pred.answer}")
    print(f"usage: {json.dumps(pred.usage)}")
    print(f"trace: {json.dumps(pred.trace.stats())}")
    out = Path(args.trace_out)
    out.mkdir(parents=True, exist_ok=True)
    for path in (pred.trace.save(out / "trace.json"), pred.trace.to_graphml(out / "trace.graphml"),
                 pred.trace.to_html(out / "trace.html")):
        print(f"wrote {path}")
    return 0


def cmd_compile(args) -> int:
    import json

    from reasonflow.compile import compile_program

    manifest = compile_program(args.program, dataset=args.dataset, optimizer=args.optimizer, train=args.train,
                               dev=args.dev, out=args.out, data_dir=args.data_dir, base_url=args.base_url,
                               model=args.model, seed=args.seed, grid=not args.no_grid,
                               token_budget=args.token_budget, api_key=args.api_key)
    print("grid (accuracy vs mean tokens per question on dev):")
    for point in manifest["grid"]:
        front = "*" if point["options"] in manifest["pareto"] else " "
        print(f"  {front} {json.dumps(point['options']):<24} acc {point['accuracy']:.3f}  tokens {point['mean_tokens']:.0f}")
    print(f"chosen: {json.dumps(manifest['options'])} ({manifest['choice_rule']})")
    print(f"dev accuracy: before {manifest['dev_before']['accuracy']:.3f} -> after {manifest['dev_after']['accuracy']:.3f}")
    print(f"wrote {args.out}")
    return 0


def _count_pairs(values: list[str] | None, flag: str) -> tuple[tuple[str, int], ...]:
    pairs = []
    for value in values or []:
        name, sep, count = value.rpartition("=")
        if not sep or not name or not count.isdigit():
            raise ConfigError(f"{flag} takes NAME=N, got {value!r}")
        pairs.append((name, int(count)))
    return tuple(pairs)


def _gold_pairs(values: list[str]) -> tuple:
    """``--gold pot=600`` or ``--gold pot=all`` (every train row that converts)."""
    from reasonflow.finetune.recipe import ALL

    return tuple((v.partition("=")[0], ALL) if v.partition("=")[2] == ALL else _count_pairs([v], "--gold")[0]
                 for v in values)


def cmd_finetune(args) -> int:
    import json

    from reasonflow.finetune import LoRAConfig, Recipe, finetune

    lora = LoRAConfig(rank=args.rank, alpha=args.alpha, learning_rate=args.lr, epochs=args.epochs,
                      max_steps=args.max_steps, batch_size=args.batch_size, max_length=args.max_length,
                      seed=args.seed, max_minutes=args.max_minutes, device=args.device, save_steps=args.save_steps,
                      snapshot_steps=args.snapshot_steps)
    gold = _gold_pairs(args.gold) if args.gold is not None else (Recipe.gold if not args.search else ())
    if args.gold is None and not args.search and args.task == "game24":
        gold = (("exact", 900),)
    recipe = Recipe(gold=gold, search=_count_pairs(args.search, "--search"), search_offset=args.search_offset,
                    gold_offset=args.gold_offset, seed=args.seed, data_dir=args.data_dir, lora=lora,
                    task=args.task, prompt_format=args.prompt_format, augment=args.augment, dev_questions=args.dev)
    manifest = finetune(args.out, recipe, base_url=args.base_url, model=args.model,
                        init_adapter=args.init_adapter, resume=not args.no_resume)
    training = manifest["training"]
    print(f"examples: {json.dumps(manifest['data']['by_source_format'])}")
    print(f"steps {training['steps']}/{training['max_steps']} in {training['seconds']:.0f}s, "
          f"loss {training['loss_first']} -> {training['final_loss']}"
          + (" (stopped by --max-minutes)" if training["stopped_by_time_limit"] else ""))
    if manifest.get("learning_curve"):
        last = manifest["learning_curve"][-1]
        print(f"dev accuracy {last['correct']}/{last['questions']} at {last['tokens']} training tokens "
              f"({len(manifest['learning_curve'])} points: learning_curve.png)")
    print(f"wrote {args.out} (serve it: reasonflow engine up --lora NAME={args.out})")
    return 0


def cmd_merge(args) -> int:
    from reasonflow.finetune import merge

    manifest = merge(args.adapter, args.out, base_model=args.base_model)
    print(f"wrote {args.out} (serve it: reasonflow engine up --model {args.out}; "
          f"served as {manifest['name']!r})")
    return 0


def cmd_programs(args) -> int:
    import json

    from reasonflow.registry import STRATEGIES, get_program, list_programs, policies

    listing = []
    for entry in list_programs():
        cls = STRATEGIES.get(entry.strategy)
        program = get_program(entry.name)
        values = program.options if getattr(program, "options", None) is not None else None
        described = cls.Options.describe() if cls is not None else {}
        options = {name: {"default": _plain(getattr(values, name, None)), "type": text}
                   for name, text in described.items()}
        listing.append({"name": entry.name, "kind": entry.kind, "strategy": entry.strategy,
                        "size_option": getattr(cls, "size_option", None), "policies": list(policies(entry.strategy)),
                        "description": " ".join(entry.description.split("\n\n")[0].split()), "options": options})
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    for item in listing:
        sized = f"  (@N sets {item['size_option']})" if item["size_option"] else ""
        print(f"{item['name']}  [{item['strategy']}, checked as {item['kind']}]{sized}")
        if item["description"]:
            print(f"    {item['description']}")
        for name, option in item["options"].items():  # a Python-only option has no -o form
            flag = "" if option["type"].endswith("Python only") else "-o "
            print(f"    {flag}{name}={json.dumps(option['default'])}  ({option['type']})")
    return 0


def _plain(value):
    from reasonflow.result import plain

    return getattr(value, "__name__", None) or plain(value) if callable(value) else plain(value)


def cmd_trace(args) -> int:
    from reasonflow.trace import Trace

    trace = Trace.load(args.file)
    if args.action == "show":
        print(trace.summary())
    else:
        print(f"wrote {trace.to_html(args.output or str(args.file).removesuffix('.json') + '.html')}")
    return 0


class _Parser(argparse.ArgumentParser):
    """``reasonflow engine ... -- ARGS``: everything after ``--`` is vLLM's own (``vllm_args``)."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        if self.prog != "reasonflow" or args[:1] != ["engine"] or "--" not in args:
            return super().parse_known_args(args, namespace)
        cut = args.index("--")
        namespace, extras = super().parse_known_args(args[:cut], namespace)
        namespace.vllm_args = args[cut + 1:]
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    from reasonflow import __version__

    parser = _Parser(prog="reasonflow", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"reasonflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    eng = sub.add_parser("engine", help="start, inspect or stop the embedded vLLM engine")
    eng.add_argument("action", choices=["up", "status", "down"])
    eng.add_argument("--model", default=EngineConfig.model, help="registered model name or local HF directory")
    eng.add_argument("--port", type=int, default=None)
    eng.add_argument("--lora", action="append", metavar="NAME=DIR", help="serve a LoRA adapter (repeatable)")
    eng.add_argument("--timeout", type=float, default=EngineConfig.start_timeout_s, help="start wait in seconds")
    eng.add_argument("--replicas", type=int, default=1,
                     help="servers of the model on this machine, each on its share of the cores (one LM over all)")
    eng.set_defaults(func=cmd_engine, vllm_args=[])

    run = sub.add_parser("run", help="run one program on one question and keep its trace")
    run.add_argument("program", help="registered name (gsm8k.tot, game24.tot@5, ...) or compiled .json")
    run.add_argument("--question", required=True)
    run.add_argument("--base-url", help="OpenAI-compatible endpoint (default: the embedded engine)")
    run.add_argument("--model", help="served model or LoRA adapter name (default: the first served)")
    run.add_argument("--api-key", help="the endpoint's API key (default: REASONFLOW_API_KEY)")
    run.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                     help="program option, e.g. -o breadth=5 (repeatable; `reasonflow programs` lists them)")
    run.add_argument("--trace-out", default="trace-out", help="directory for trace.json/.graphml/.html")
    run.set_defaults(func=cmd_run)

    from reasonflow.bench import register_cli as register_bench
    from reasonflow.serve.cli import register_cli as register_serve

    register_bench(sub)
    register_serve(sub)

    comp = sub.add_parser("compile", help="optimize a program's prompts, demos and knobs on a train split")
    comp.add_argument("program")
    comp.add_argument("--dataset", default="gsm8k")
    comp.add_argument("--data-dir")
    comp.add_argument("--optimizer", default="bootstrap", choices=["bootstrap", "random_search", "mipro", "gepa"])
    comp.add_argument("--train", type=int, default=16)
    comp.add_argument("--dev", type=int, default=16)
    comp.add_argument("--seed", type=int, default=0)
    comp.add_argument("--base-url")
    comp.add_argument("--model")
    comp.add_argument("--api-key", help="the endpoint's API key (default: REASONFLOW_API_KEY)")
    comp.add_argument("--no-grid", action="store_true", help="skip the search-knob grid")
    comp.add_argument("--token-budget", type=float, help="max mean tokens per question for the chosen knobs")
    comp.add_argument("--out", required=True, help="artifact path, e.g. programs/compiled/NAME.json")
    comp.set_defaults(func=cmd_compile)

    from reasonflow.finetune.train import LoRAConfig as Lora

    ft = sub.add_parser("finetune", help="LoRA fine-tune the model on gold solutions and/or correct search traces")
    ft.add_argument("--out", required=True, help="adapter directory, e.g. programs/adapters/NAME")
    ft.add_argument("--task", default="gsm8k", choices=["gsm8k", "game24"],
                    help="gsm8k: PoT/CoT from gold solutions; game24: propose + value from exact labels")
    ft.add_argument("--prompt-format", choices=["json", "compact"],
                    help="prompt the adapter is trained on and called with (default: compact for game24, json for gsm8k)")
    ft.add_argument("--gold", action="append", metavar="FORMAT=N",
                    help="N GSM8K train gold solutions in FORMAT (pot or cot; N=all: every train row that "
                         "converts, the dev slice excepted), or for game24 exact=N train puzzles (propose=N / value=N: one half only); repeatable "
                         "(default: pot=256, game24 exact=900, unless --search is given)")
    ft.add_argument("--augment", type=int, default=0, metavar="M",
                    help="add up to M number-perturbed variants of every gold PoT example (GSM-Symbolic style)")
    ft.add_argument("--dev", type=int, default=0, metavar="N",
                    help="learning curve: dev accuracy on N train rows of the dev slice (never trained on) at "
                         "step 0, every --snapshot-steps and at the end (learning_curve.png)")
    ft.add_argument("--search", action="append", metavar="PROGRAM=N",
                    help="run PROGRAM over N train questions and keep its correct samples; repeatable")
    ft.add_argument("--search-offset", type=int, default=0, help="first train row (after the seeded shuffle) to search")
    ft.add_argument("--gold-offset", type=int, default=0, help="first train row (after the seeded shuffle) for gold")
    ft.add_argument("--init-adapter", help="continue from this adapter and search with it (expert iteration round 2)")
    ft.add_argument("--base-url", help="endpoint to search with (default: an embedded engine, stopped before training)")
    ft.add_argument("--model", help="served model or adapter to search with at --base-url")
    ft.add_argument("--data-dir", help="local benchmark files (default: REASONFLOW_DATA_DIR, else the hub)")
    ft.add_argument("--rank", type=int, default=Lora.rank)
    ft.add_argument("--alpha", type=int, default=Lora.alpha)
    ft.add_argument("--lr", type=float, default=Lora.learning_rate)
    ft.add_argument("--epochs", type=float, default=Lora.epochs)
    ft.add_argument("--max-steps", type=int, default=Lora.max_steps, help="> 0 overrides --epochs")
    ft.add_argument("--batch-size", type=int, default=Lora.batch_size)
    ft.add_argument("--max-length", type=int, default=Lora.max_length)
    ft.add_argument("--save-steps", type=int, default=Lora.save_steps, help="trainer checkpoint interval (resume)")
    ft.add_argument("--snapshot-steps", type=int, default=Lora.snapshot_steps,
                    help="> 0: a small adapter snapshot (bf16, resumable without optimizer) every N steps")
    ft.add_argument("--max-minutes", type=float, default=Lora.max_minutes, help="stop training after this long")
    ft.add_argument("--seed", type=int, default=Lora.seed)
    ft.add_argument("--device", default=Lora.device, choices=["cpu", "cuda"])
    ft.add_argument("--no-resume", action="store_true", help="start over instead of continuing from a checkpoint")
    ft.set_defaults(func=cmd_finetune)

    mrg = sub.add_parser("merge", help="fold a LoRA adapter into the base weights (full-speed serving on CPU)")
    mrg.add_argument("adapter", help="adapter directory made by `reasonflow finetune`")
    mrg.add_argument("--out", required=True, help="new model directory; its name is the served model name")
    mrg.add_argument("--base-model", default=EngineConfig.model, help="registered model name or local HF directory")
    mrg.set_defaults(func=cmd_merge)

    progs = sub.add_parser("programs", help="list the registered programs with their options")
    progs.add_argument("--json", action="store_true", help="machine-readable: a JSON list")
    progs.set_defaults(func=cmd_programs)

    trace = sub.add_parser("trace", help="summarise a trace file or render it to HTML")
    trace.add_argument("action", choices=["show", "html"])
    trace.add_argument("file")
    trace.add_argument("-o", "--output", help="HTML output path (default: FILE with .html)")
    trace.set_defaults(func=cmd_trace)
    return parser


def main(argv: list[str] | None = None) -> int:
    import shlex

    given = sys.argv[1:] if argv is None else argv
    if given[:2] == ["bench", "merge"]:  # `bench merge OUT SHARD_DIR...`: its own arguments, not a bench run's
        from reasonflow.bench.cli import merge_main

        return merge_main(given[2:], prog="reasonflow bench merge", command=shlex.join(["reasonflow", *given]))
    args = build_parser().parse_args(argv)
    # What results.json records as the command: these arguments, or the process's own argv
    args.command_line = shlex.join(["reasonflow", *(sys.argv[1:] if argv is None else argv)])
    return cli_main(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
