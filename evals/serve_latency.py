"""Print the p50 latency of an SC@8 ``POST /v1/solve`` next to a raw ``n=8`` request to the engine.

    python evals/serve_latency.py [--base-url URL] [--program gsm8k.sc@8] [--repeats 5] [--json]

Both sides do the same work: the raw request is the exact chat request the program sends (messages,
JSON schema, n, temperature, max_tokens, captured from one direct run), and a fixed ``seed`` makes
vLLM sample the same tokens every time, so the difference is the server's overhead (HTTP, validation,
DSPy formatting and parsing, voting, trace). Runs alternate, so drift in a shared engine's load hits
both sides alike. The server runs in this process under uvicorn on loopback. The goal is a ratio of
at most 1.1. The server's own overhead (wall time minus the time its LM calls took) is printed as
well: unlike the ratio, it does not depend on how busy a shared engine is.

With no --base-url it uses REASONFLOW_BASE_URL, the engine ``reasonflow engine up`` started, or starts
the embedded engine. Not guaranteed: stable figures on a loaded machine (raise --repeats).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx
import openai

from reasonflow.lm import OPENAI_PARAMS, VLLM_EXTRA_PARAMS, connect, resolve_base_url, session
from reasonflow.registry import get_program
from reasonflow.serve import ServeLimits, create_app
from reasonflow.serve.testing import serving

QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether in April and May?")


def captured_request(lm, program: str, question: str) -> tuple[dict, dict]:
    """The body (and vLLM extras) of the one request ``program`` sends for ``question``."""
    probe = lm.copy()
    with session(probe):
        get_program(program)(question=question)
    if len(probe.history) != 1:
        raise SystemExit(f"{program} sent {len(probe.history)} requests; this benchmark compares one-request programs")
    entry = probe.history[-1]
    merged = {**probe.kwargs, **entry["kwargs"]}
    body = {k: v for k, v in merged.items() if k in OPENAI_PARAMS and v is not None}
    extra = {k: v for k, v in merged.items() if k in VLLM_EXTRA_PARAMS and v is not None}
    return {"model": lm.served_model, "messages": entry["messages"], **body}, extra


def measure(args) -> dict:
    url = resolve_base_url(args.base_url)
    lm = connect(url, args.model, seed=args.seed)
    body, extra = captured_request(lm, args.program, args.question)
    engine = openai.OpenAI(base_url=url, api_key="EMPTY", timeout=600, max_retries=0)
    app = create_app([args.program], lm=lm, limits=ServeLimits())
    solve_s, raw_s, solve_tokens, raw_tokens, overhead_s = [], [], [], [], []
    with serving(app) as server, httpx.Client(base_url=server, timeout=600) as client:
        def solve() -> None:
            started = time.perf_counter()
            r = client.post("/v1/solve", json={"program": args.program, "question": args.question})
            r.raise_for_status()
            solve_s.append(time.perf_counter() - started)
            usage = r.json()["usage"]
            solve_tokens.append(usage["completion_tokens"])
            overhead_s.append(solve_s[-1] - usage["latency_s"])  # wall time not spent waiting on the engine

        def raw() -> None:
            started = time.perf_counter()
            out = engine.chat.completions.create(**body, extra_body=extra or None)
            raw_s.append(time.perf_counter() - started)
            raw_tokens.append(out.usage.completion_tokens)

        solve(), raw()  # warm-up (prefix cache, connection pools); not counted
        for figures in (solve_s, raw_s, solve_tokens, raw_tokens, overhead_s):
            figures.clear()
        for i in range(args.repeats):
            for step in ((solve, raw) if i % 2 == 0 else (raw, solve)):
                step()
                if not args.json:
                    print(f"  {step.__name__:<5} {(solve_s if step is solve else raw_s)[-1]:6.2f} s", flush=True)
    p50_solve, p50_raw = statistics.median(solve_s), statistics.median(raw_s)
    return {"base_url": url, "program": args.program, "n": body.get("n"), "repeats": args.repeats,
            "p50_solve_s": round(p50_solve, 3), "p50_raw_s": round(p50_raw, 3),
            "ratio": round(p50_solve / p50_raw, 3), "goal": 1.1,
            "p50_server_overhead_s": round(statistics.median(overhead_s), 4),
            "completion_tokens_solve": solve_tokens, "completion_tokens_raw": raw_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url")
    parser.add_argument("--model", help="served model at the engine (default: the first)")
    parser.add_argument("--program", default="gsm8k.sc@8")
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"program {result['program']} (n={result['n']}), {result['repeats']} runs each, engine {result['base_url']}")
    print(f"p50 POST /v1/solve     {result['p50_solve_s']:7.3f} s   completion tokens {result['completion_tokens_solve']}")
    print(f"p50 raw n={result['n']} request  {result['p50_raw_s']:7.3f} s   completion tokens {result['completion_tokens_raw']}")
    print(f"p50 server overhead    {result['p50_server_overhead_s'] * 1000:7.1f} ms  (solve wall time minus its LM call time)")
    verdict = "meets" if result["ratio"] <= result["goal"] else "MISSES"
    print(f"ratio {result['ratio']:.3f}x ({verdict} the goal of <= {result['goal']}x)")


if __name__ == "__main__":
    main()
