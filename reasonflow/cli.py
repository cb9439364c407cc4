"""The ``reasonflow`` command line: ``engine``, ``run``, ``bench``, ``compile``, ``serve``, ``trace``.

    reasonflow engine up [--model smollm2-135m|DIR] [--lora NAME=DIR ...]
    reasonflow engine status          # exit 1 when no engine answers
    reasonflow engine down

Each subcommand is a thin layer over the library; errors from reasonflow print as one line
(``error: ...``) with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys

from reasonflow.config import EngineConfig
from reasonflow.errors import ConfigError, EngineNotRunning, ReasonflowError


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

    if args.action == "up":
        config = EngineConfig(model=args.model, port=args.port, lora=_lora_pairs(args.lora),
                              start_timeout_s=args.timeout)
        state, started = engine.up(config)
        print(f"{'started' if started else 'reusing'} engine pid {state.pid} ({state.served_model})", file=sys.stderr)
        print(f"base_url: {state.base_url}")
        return 0
    if args.action == "status":
        try:
            state = engine.status()
        except EngineNotRunning as exc:
            print(f"down: {exc}")
            return 1
        print(f"up: pid {state.pid} model {state.served_model} adapters {list(state.lora)}")
        print(f"base_url: {state.base_url}")
        print(f"log: {state.log_path}")
        return 0
    state = engine.down()
    print(f"stopped engine pid {state.pid}" if state else "no engine was up")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasonflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    eng = sub.add_parser("engine", help="start, inspect or stop the embedded vLLM engine")
    eng.add_argument("action", choices=["up", "status", "down"])
    eng.add_argument("--model", default=EngineConfig.model, help="registered model name or local HF directory")
    eng.add_argument("--port", type=int, default=None)
    eng.add_argument("--lora", action="append", metavar="NAME=DIR", help="serve a LoRA adapter (repeatable)")
    eng.add_argument("--timeout", type=float, default=EngineConfig.start_timeout_s, help="start wait in seconds")
    eng.set_defaults(func=cmd_engine)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ReasonflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
