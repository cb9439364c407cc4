"""``reasonflow serve``: run the FastAPI app under uvicorn.

    reasonflow serve gsm8k.cot gsm8k.sc@8 programs/compiled/gsm8k_cot.json \\
        [--base-url URL] [--model NAME] [--host 127.0.0.1] [--port 8100] [--api-key KEY] [-o temperature=0.5]
    python -m reasonflow.serve.cli ...        # the same, without the top-level CLI

``-o KEY=VALUE`` sets a served program's default for an option (every served program's; a request's own
``options`` and a name's ``@N`` still win): the programs are re-registered in this process with those
defaults (``preset``), so a bad value fails at start. The engine's own key, if it has one, comes from
``REASONFLOW_API_KEY``.
``register_cli(subparsers)`` adds the subcommand to ``reasonflow.cli``. The API key may come from
``REASONFLOW_SERVE_API_KEY`` instead of ``--api-key`` (so it stays out of the process list).
``--trace-dir DIR`` keeps traces as files in DIR, so several servers behind one load balancer answer
``GET /v1/traces/{id}`` for each other (``reasonflow.serve.store``).
``serve(...)`` is the function behind it, for use from Python. SIGTERM or Ctrl-C stops accepting
connections and lets in-flight requests finish for up to ``--shutdown-grace`` seconds; an engine that
the server started itself (no ``--base-url`` and no detached engine) stops with it, however it ends.
Every request has a deadline (``--request-deadline``, default 120 s; a request may ask for up to
``--max-request-deadline`` with ``options.deadline_s``), and its body must arrive within
``--body-timeout``. Programs that run model-written code (``pot``) need a bubblewrap jail; without
one the server says so at start and answers them 503 unless started with ``--allow-unisolated-code``
(or ``REASONFLOW_ALLOW_UNISOLATED_CODE=1``).

Not guaranteed: TLS, or binding beyond loopback safely without ``--api-key``: a warning is printed
when ``--host`` is not a loopback address and no key is set.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from dataclasses import replace

from reasonflow.errors import ConfigError
from reasonflow.serve.config import DEFAULT_SERVE_HOST, DEFAULT_SERVE_PORT, ServeLimits

API_KEY_ENV = "REASONFLOW_SERVE_API_KEY"


def serve(programs: list[str], *, base_url: str | None = None, model: str | None = None,
          host: str = DEFAULT_SERVE_HOST, port: int = DEFAULT_SERVE_PORT, api_key: str | None = None,
          limits: ServeLimits = ServeLimits(), log_level: str = "info", lm=None,
          allow_unisolated_code: bool | None = None, trace_dir=None) -> None:
    """Build the app and run it until SIGTERM/SIGINT (blocking)."""
    try:
        import uvicorn

        from reasonflow.serve.app import create_app
    except ImportError as exc:
        raise ConfigError(f"reasonflow serve needs the serve extra ({exc.name} is missing): "
                          "pip install 'reasonflow[serve]'") from exc

    if not api_key and not _loopback(host):
        print(f"warning: serving on {host} without an API key; anyone who can reach it can use it", file=sys.stderr)
    app = create_app(programs, lm=lm, base_url=base_url, model=model, api_key=api_key, limits=limits,
                     allow_unisolated_code=allow_unisolated_code, trace_dir=trace_dir)
    state = app.state.reasonflow
    if any(p.runs_code for p in state.programs.values()):
        from reasonflow import sandbox

        print(sandbox.describe(), file=sys.stderr)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=limits.shutdown_grace_s,
                            limit_concurrency=None, timeout_keep_alive=5)
    uvicorn.Server(config).run()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def preset(programs: list[str], options: dict) -> None:
    """Re-register the registered program behind each of ``programs`` (a name, or a compiled artifact's
    manifest program) so that ``options`` are its defaults, under the same name, in this process."""
    if not options:
        return
    from reasonflow.artifact import read
    from reasonflow.registry import parse_name, register, spec

    done = set()
    for name in programs:
        base = read(name)["manifest"]["program"] if str(name).endswith(".json") else name
        entry = spec(base)  # ConfigError for an unknown program
        if entry.name in done:
            continue
        done.add(entry.name)

        def factory(_original=entry.factory, **given):
            return _original(**{**options, **given})

        register(entry.name, kind=entry.kind, description=entry.description,
                 strategy=entry.strategy)(factory)
        parse_name(base)  # the name still parses (its @N and :POLICY) after the swap


def cmd_serve(args: argparse.Namespace) -> int:
    from reasonflow.options import parse_pairs

    preset(args.programs, parse_pairs(args.option))
    limits = replace(ServeLimits(), max_concurrency=args.max_concurrency, trace_retention=args.trace_retention,
                     shutdown_grace_s=args.shutdown_grace, request_deadline_s=args.request_deadline,
                     max_request_deadline_s=max(args.max_request_deadline, args.request_deadline),
                     body_timeout_s=args.body_timeout)
    serve(args.programs, base_url=args.base_url, model=args.model, host=args.host, port=args.port,
          api_key=args.api_key or os.environ.get(API_KEY_ENV) or None, limits=limits, log_level=args.log_level,
          allow_unisolated_code=True if args.allow_unisolated_code else None, trace_dir=args.trace_dir)
    return 0


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``reasonflow`` command's subparsers."""
    defaults = ServeLimits()
    p = subparsers.add_parser("serve", help="serve programs over HTTP (REST, OpenAI-compatible, SSE)")
    p.add_argument("programs", nargs="+", metavar="ARTIFACT_OR_PROGRAM",
                   help="registered name (gsm8k.sc@8, ...) or compiled .json; the first is the default")
    p.add_argument("--base-url", help="OpenAI-compatible engine endpoint (default: the embedded engine)")
    p.add_argument("--model", help="served model or LoRA adapter name at the engine (default: the first)")
    p.add_argument("--host", default=DEFAULT_SERVE_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_SERVE_PORT,
                   help=f"default {DEFAULT_SERVE_PORT}, off vLLM's 8000 so an engine and a server share a host")
    p.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' (or set {API_KEY_ENV})")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="default for a program option of every served program, e.g. -o temperature=0.5 "
                        "(repeatable; requests may still set their own)")
    p.add_argument("--max-concurrency", type=int, default=defaults.max_concurrency,
                   help="solving requests in flight before the server answers 503")
    p.add_argument("--trace-retention", type=int, default=defaults.trace_retention,
                   help="traces kept (in memory, or in --trace-dir); the oldest is dropped")
    p.add_argument("--trace-dir", metavar="DIR",
                   help="keep traces as files in DIR: servers given the same DIR answer GET /v1/traces/{id} "
                        "for each other's runs (default: in memory)")
    p.add_argument("--shutdown-grace", type=float, default=defaults.shutdown_grace_s,
                   help="seconds in-flight requests get to finish after SIGTERM")
    p.add_argument("--request-deadline", type=float, default=defaults.request_deadline_s,
                   help="seconds each request may run before it is cancelled with a 504 (options.deadline_s "
                        "may ask for another)")
    p.add_argument("--max-request-deadline", type=float, default=defaults.max_request_deadline_s,
                   help="the longest options.deadline_s a request may ask for")
    p.add_argument("--body-timeout", type=float, default=defaults.body_timeout_s,
                   help="seconds a client has to send its whole request body (else 408)")
    p.add_argument("--allow-unisolated-code", action="store_true",
                   help="run pot programs' model-written code even where no bubblewrap jail is available "
                        "(also REASONFLOW_ALLOW_UNISOLATED_CODE=1); unsafe on a shared host")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    from reasonflow.errors import cli_main

    parser = argparse.ArgumentParser(prog="reasonflow")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    return cli_main(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
