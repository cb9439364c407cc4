"""Print the client CPU that one LM call costs, per path, against a stub engine in another process.

    python evals/client_overhead.py [--calls 300] [--inflight 1,512] [--baseline-tree DIR] [--json]

A stub OpenAI-compatible server (aiohttp, its own process) answers every chat request at once with
JSON that fits the request's schema, so what is left is the caller's own work. Each path runs in a
fresh worker process, which times ``time.process_time()`` (every thread of the process: the event
loop thread, worker threads, the GC) over ``--calls`` calls after a warm-up, and reports milliseconds
per call. The paths:

- ``raw sync`` / ``raw async``: the bare ``openai`` client (httpx transport), the anchor, and
  ``raw async aiohttp``, the same over the aiohttp transport that reasonflow's async calls use;
- ``lm sync`` / ``lm async``: ``VLLMLM.forward`` / ``aforward`` with one prompt;
- ``program sync`` / ``program async``: ``gsm8k.cot``, through DSPy and ``StructuredAdapter``.

Async paths are run at each ``--inflight`` level (that many calls in flight, at least that many calls).
``--baseline-tree DIR`` runs the reasonflow paths a second time with DIR (an older checkout, e.g. from
``git archive``) first on ``sys.path``, in the same run, so before/after is a same-run ratio.

Not guaranteed: stable figures on a shared, loaded machine (run it twice; compare ratios, not ms).
The stub's own CPU is not counted; at high concurrency its speed bounds the wall time, not the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

QUESTION = "Natalia sold clips to 48 of her friends in April, and half as many in May. How many in all?"
SCRIPT = str(Path(__file__).resolve())
SYNC_PATHS = ("raw sync", "lm sync", "program sync")
ASYNC_PATHS = ("raw async", "raw async aiohttp", "lm async", "program async")
GOAL_MS = 2.0  # issue 15: client CPU per call, sync and async, at 1 and 512 in flight
REASONFLOW_PATHS = ("lm sync", "program sync", "lm async", "program async")


# --- the stub engine (its own process) ----------------------------------------------------------
def _stub_content(body: dict) -> str:
    """JSON with every property of the request's schema filled in (numbers-as-strings get "1")."""
    fmt = body.get("response_format") or {}
    props = fmt.get("json_schema", {}).get("schema", {}).get("properties", {})
    return json.dumps({name: "1" if "pattern" in p else "x" for name, p in props.items()}) if props else "ok"


def serve_stub(port: int) -> None:
    from aiohttp import web

    from openai_stub import stub_app

    web.run_app(stub_app(_stub_content), host="127.0.0.1", port=port, print=None, access_log=None, backlog=2048)


# --- one path, measured in a worker process ------------------------------------------------------
def _caller(path: str, url: str):
    """(call, is_async): one call of ``path``, set up once."""
    if path.startswith("raw"):
        import openai

        body = {"model": "stub", "max_tokens": 64, "messages": [{"role": "user", "content": QUESTION}]}
        if path == "raw sync":
            client = openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0)
            return (lambda: client.chat.completions.create(**body)), False
        transport = openai.DefaultAioHttpClient if path.endswith("aiohttp") else openai.DefaultAsyncHttpxClient
        aclient = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0,
                                     http_client=transport(limits=_httpx_limits()))
        return (lambda: aclient.chat.completions.create(**body)), True
    import dspy

    import reasonflow
    from reasonflow.lm import VLLMLM

    lm = VLLMLM(url, "stub", max_tokens=64)
    dspy.configure(lm=lm, adapter=reasonflow.StructuredAdapter())
    messages = [{"role": "user", "content": QUESTION}]
    if path == "lm sync":
        return (lambda: lm.forward(messages=messages)), False
    if path == "lm async":
        return (lambda: lm.aforward(messages=messages)), True
    program = reasonflow.program("gsm8k.cot")
    if path == "program sync":
        return (lambda: program(question=QUESTION)), False
    return (lambda: program.acall(question=QUESTION)), True


def _httpx_limits():
    import httpx

    return httpx.Limits(max_connections=1024, max_keepalive_connections=256)


def _check(result) -> None:
    answer = getattr(result, "answer", True)
    if answer is None:  # a program that silently failed would measure nothing
        raise SystemExit(f"the call failed: {getattr(result, 'error', result)}")


def measure(path: str, url: str, calls: int, inflight: int) -> dict:
    call, is_async = _caller(path, url)
    if not is_async:
        for _ in range(min(20, calls)):
            _check(call())
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            _check(call())
        return _figures(path, 1, calls, time.process_time() - cpu, time.perf_counter() - wall)

    async def run(count: int) -> None:
        gate = asyncio.Semaphore(inflight)

        async def one():
            async with gate:
                _check(await call())

        await asyncio.gather(*(one() for _ in range(count)))

    async def main() -> dict:
        calls_run = max(calls, inflight)
        await run(inflight)  # warm-up: opens the connections
        cpu, wall = time.process_time(), time.perf_counter()
        await run(calls_run)
        return _figures(path, inflight, calls_run, time.process_time() - cpu, time.perf_counter() - wall)

    return asyncio.run(main())


def _figures(path: str, inflight: int, calls: int, cpu_s: float, wall_s: float) -> dict:
    return {"path": path, "inflight": inflight, "calls": calls,
            "cpu_ms_per_call": round(cpu_s * 1000 / calls, 3), "wall_ms_per_call": round(wall_s * 1000 / calls, 3)}


# --- the driver --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the stub server exited")
        try:
            httpx.get(f"{url}/models", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the stub server did not come up")


def run_worker(path: str, url: str, calls: int, inflight: int, tree: str | None) -> dict:
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    here = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (tree or here, env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, SCRIPT, "--worker", path, "--url", url, "--calls", str(calls),
                          "--inflight", str(inflight)], env=env, capture_output=True, text=True, cwd=tree or here)
    if out.returncode != 0:
        raise SystemExit(f"{path} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def plan(levels: list[int]) -> list[tuple[str, int]]:
    return [(p, 1) for p in SYNC_PATHS] + [(p, k) for k in levels for p in ASYNC_PATHS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per path (at least --inflight)")
    parser.add_argument("--inflight", default="1,512", help="comma-separated in-flight levels for async paths")
    parser.add_argument("--baseline-tree", help="an older checkout whose reasonflow is measured too")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--stub", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        return serve_stub(args.stub)
    if args.worker:
        import reasonflow

        result = measure(args.worker, args.url, args.calls, int(args.inflight))
        print(json.dumps({**result, "reasonflow": str(Path(reasonflow.__file__).parents[1])}))
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    stub = subprocess.Popen([sys.executable, SCRIPT, "--stub", str(port)])
    rows = []
    try:
        _wait_ready(url, stub)
        for path, inflight in plan([int(x) for x in args.inflight.split(",")]):
            trees = [None] + ([args.baseline_tree] if args.baseline_tree and path in REASONFLOW_PATHS else [])
            for tree in trees:
                row = run_worker(path, url, args.calls, inflight, tree)
                row["tree"] = "baseline" if tree else "this"
                rows.append(row)
                if not args.json:
                    print(f"{path:>17} {row['tree']:>8}  in flight {inflight:>4}: "
                          f"{row['cpu_ms_per_call']:7.2f} ms CPU/call  ({row['wall_ms_per_call']:.2f} ms wall, "
                          f"{row['calls']} calls)", flush=True)
    finally:
        stub.terminate()
        stub.wait(10)
    summary = compare(rows)
    if args.json:
        print(json.dumps({"rows": rows, "summary": summary}, indent=2))
        return
    for row in summary:
        before = f", baseline {row['baseline_ms']:.2f} ms (after/before {row['after_over_before']:.2f})" \
            if "baseline_ms" in row else ""
        print(f"{row['path']:>17} in flight {row['inflight']:>4}: {row['ms']:.2f} ms, "
              f"{row['over_raw']:.2f}x the raw openai call{before}; goal < {GOAL_MS} ms: "
              f"{'met' if row['ms'] < GOAL_MS else 'MISSED'}")


def compare(rows: list[dict]) -> list[dict]:
    """Per reasonflow path: its CPU per call over the raw anchor at the same in-flight level (raw sync
    for sync paths), and over the baseline tree's, when measured."""
    cpu = {(r["path"], r["inflight"], r["tree"]): r["cpu_ms_per_call"] for r in rows}
    out = []
    for (path, inflight, tree), ms in cpu.items():
        if tree != "this" or path.startswith("raw"):
            continue
        raw = cpu.get(("raw async" if path in ASYNC_PATHS else "raw sync", inflight, "this"))
        row = {"path": path, "inflight": inflight, "ms": ms, "over_raw": round(ms / raw, 3) if raw else None}
        if (path, inflight, "baseline") in cpu:
            row["baseline_ms"] = cpu[(path, inflight, "baseline")]
            row["after_over_before"] = round(ms / row["baseline_ms"], 3)
        out.append(row)
    return out


if __name__ == "__main__":
    main()
