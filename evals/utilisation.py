"""Engine utilisation of SC@8 and ToT(b=5) on GSM8K: the work the engine did for the program, per
second, divided by what it can do at the same concurrency cap, both measured in this run.

    python evals/utilisation.py --data-dir ../shared/data [--questions 10] [--cap 32] [--base-url URL]
                                [--programs gsm8k.sc@8,gsm8k.tot@5] [--split on|off|both] [--json]

Every token count is the engine's own, from its Prometheus counters at ``/metrics`` read before and
after (``vllm:prompt_tokens_total`` less ``vllm:prompt_tokens_cached_total``: the prompt tokens it
computed, per sampled sequence, prefix-cache hits excluded; ``vllm:generation_tokens_total``), not
the responses' usage: for a request with n > 1 vLLM's ``cached_tokens`` is one sample's, so the
usage undercounts what the other samples' prefills cost or saved. Figures per program:

- ``utilisation`` (the engine's real work): computed prompt plus generated tokens per second, over
  the **mixed peak**: the same count for ``cap`` synthetic sequences in flight shaped like the
  program's average request: its samples per request (``n``), its computed prompt tokens per request
  and its generated tokens per sequence. Each prompt starts with a number no other prompt of the run
  has, so the cache serves none of it past the chat template; its length is calibrated by two short
  requests first (computed tokens against words, the template and the samples' prefills included).
  Measured right after the program.
- ``vs_guided_mixed`` (how much of the engine the orchestrator leaves unused): the same engine work
  over the **guided mixed peak**, the mixed peak's requests under a JSON-schema response format
  (``throughput.GUIDED_FORMAT``: one long string field), since every reasonflow program decodes under
  a grammar and its per-token cost is the engine's, not the caller's (``evals/guided_decoding.py``
  compares the backends).
- ``occupancy``: the engine's running sequences (``vllm:num_requests_running``, sampled every
  ``SAMPLE_S``) on average over the run, divided by ``cap``; the peak's beside it. It is what the
  caller controls: how full it keeps the batch.
- ``generated_only`` (the old figure, kept so earlier numbers stay comparable): generated tok/s over
  ``peak_throughput`` at ``cap`` single-sequence requests of 64 tokens, measured first. Its peak under
  guided JSON decoding (what reasonflow's programs use) is printed beside it.

The cap is counted in sequences in flight (one request with n=8 is 8 sequences: vLLM batches them
like 8 requests) and enforced by the LM itself (``LMConfig(max_sequences=cap)``): all questions are
admitted at once and their requests wait at the gate, so the engine never sees more than ``cap``
sequences, and one question's barrier (a ToT round waiting for its slowest request) does not idle
the engine while other questions have work. Under the cap the LM sends an n=k call as k one-sample
requests (``LMConfig.split_samples``); ``--split both`` measures each program that way and as one
request of n=k (``off``), one after the other, so the two can be compared within one run.

Not guaranteed: the mixed peak matches the program's prefill/decode mix and samples per request on
average, not its requests one by one (a program that mixes n=1 and n=8 calls is measured at their
mean n, rounded; prefill per token grows a little with prompt length). The counters are engine-wide:
run it on an engine nothing else uses.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from dataclasses import asdict, dataclass

import openai

import reasonflow
from reasonflow.bench.engine_metrics import scrape
from reasonflow.data import load
from reasonflow.engine.throughput import GUIDED_FORMAT, peak_throughput
from reasonflow.lm import resolve_base_url

FILLER = " ship"  # one token per repeat in common tokenizers; the prompt's length in words
PROMPT_TOKENS, CACHED_TOKENS = "vllm:prompt_tokens_total", "vllm:prompt_tokens_cached_total"
GENERATED_TOKENS, RUNNING = "vllm:generation_tokens_total", "vllm:num_requests_running"
SAMPLE_S = 0.25  # how often the running sequences are read during a measurement
CALIBRATION_WORDS = 64  # the longer of the two calibration prompts
PEAK_ROUNDS = 4  # a mixed peak runs cap x PEAK_ROUNDS sequences: its ramp and tail stay a small share
_runs = itertools.count(1)  # numbers prompts of different peaks apart: no prefix is shared across them


@dataclass(frozen=True)
class EngineWork:
    """Tokens the engine computed over a wall time, and over how many requests and sequences."""

    sequences: int
    prompt_tokens: int  # computed: prefix-cache hits excluded
    completion_tokens: int
    wall_s: float
    requests: int = 0  # 0: not counted (then every request is taken as one sequence)
    mean_running: float | None = None  # the engine's running sequences on average, when sampled

    @property
    def tok_s(self) -> float:
        return (self.prompt_tokens + self.completion_tokens) / self.wall_s if self.wall_s else 0.0

    @property
    def generated_tok_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s else 0.0

    def shape(self) -> tuple[float, float]:
        """Computed prompt tokens and generated tokens per sequence."""
        per = max(self.sequences, 1)
        return self.prompt_tokens / per, self.completion_tokens / per

    def request_shape(self) -> tuple[float, float]:
        """Computed prompt tokens per request and sequences per request (the mean ``n``)."""
        requests = self.requests or max(self.sequences, 1)
        return self.prompt_tokens / requests, max(self.sequences, 1) / requests

    def to_dict(self) -> dict:
        prompt, completion = self.shape()
        per_request, samples = self.request_shape()
        return {**asdict(self), "tok_s": round(self.tok_s, 2), "generated_tok_s": round(self.generated_tok_s, 2),
                "prompt_tokens_per_sequence": round(prompt, 1), "completion_tokens_per_sequence": round(completion, 1),
                "prompt_tokens_per_request": round(per_request, 1), "sequences_per_request": round(samples, 2)}


class EngineMeter:
    """The engine's counters over an ``async with`` block (engine-wide), and with ``sample`` its
    running sequences read every ``SAMPLE_S`` meanwhile."""

    def __init__(self, base_url: str, api_key: str | None = None, *, sample: bool = True):
        self.base_url, self.api_key, self.sample = base_url, api_key, sample
        self.running: list[float] = []

    async def __aenter__(self) -> "EngineMeter":
        self.before = await self._counters()
        self.started = time.perf_counter()
        self._sampler = asyncio.create_task(self._sample_running()) if self.sample else None
        return self

    async def __aexit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self.started
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
        self.after = await self._counters()

    async def _counters(self) -> dict[str, float]:
        metrics = await scrape(self.base_url, self.api_key)
        missing = [n for n in (PROMPT_TOKENS, CACHED_TOKENS, GENERATED_TOKENS) if metrics is None or n not in metrics]
        if missing:
            raise SystemExit(f"{self.base_url} exposes no {', '.join(missing)} at /metrics; "
                             "utilisation counts the engine's work with vLLM's own counters")
        return metrics

    async def _sample_running(self) -> None:
        while True:
            metrics = await scrape(self.base_url, self.api_key)
            if metrics and RUNNING in metrics:
                self.running.append(metrics[RUNNING])
            await asyncio.sleep(SAMPLE_S)

    def delta(self, name: str) -> int:
        return round(self.after[name] - self.before[name])

    @property
    def computed_prompt_tokens(self) -> int:
        return self.delta(PROMPT_TOKENS) - self.delta(CACHED_TOKENS)

    def work(self, sequences: int, requests: int) -> EngineWork:
        mean = sum(self.running) / len(self.running) if self.running else None
        return EngineWork(sequences, self.computed_prompt_tokens, self.delta(GENERATED_TOKENS), self.wall_s,
                          requests=requests, mean_running=mean)


async def mixed_peak(base_url: str, model: str, cap: int, *, prompt_tokens: float, completion_tokens: float,
                     samples: float = 1, rounds: int = PEAK_ROUNDS, api_key: str = "EMPTY",
                     guided: bool = False) -> EngineWork:
    """Engine work per second with ``cap`` sequences in flight for ``rounds`` rounds: requests of
    ``samples`` sequences each (``n``, rounded; at most ``cap``) whose prompts share nothing past the
    chat template and cost the engine about ``prompt_tokens`` computed tokens each (calibrated first),
    with exactly ``completion_tokens`` generated per sequence (``ignore_eos``; with ``guided``, under
    ``GUIDED_FORMAT`` instead, whose long string field runs to ``max_tokens``: EOS is the grammar's)."""
    n = max(1, min(round(samples), cap))
    generate = max(1, round(completion_tokens))
    requests = max(1, -(-cap * rounds // n))
    gate = asyncio.Semaphore(max(1, cap // n))
    run = next(_runs)

    async def one(client, i: int, words: int, max_tokens: int) -> int:
        async with gate:
            shape = {"response_format": GUIDED_FORMAT} if guided else \
                {"extra_body": {"ignore_eos": True, "min_tokens": max_tokens}}
            resp = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"{run}.{i}:{FILLER * words}"}],
                max_tokens=max_tokens, temperature=1.0, n=n, **shape)
            return len(resp.choices)

    async with openai.AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=600, max_retries=0) as client:
        computed = []  # what a 1-word and a CALIBRATION_WORDS-word request cost, template and samples included
        for i, words in ((-1, 1), (-2, CALIBRATION_WORDS)):
            async with EngineMeter(base_url, api_key, sample=False) as meter:
                await one(client, i, words, 1)
            computed.append(meter.computed_prompt_tokens)
        per_word = (computed[1] - computed[0]) / (CALIBRATION_WORDS - 1)
        words = max(1, round(1 + (prompt_tokens - computed[0]) / per_word)) if per_word > 0 else 1
        async with EngineMeter(base_url, api_key) as meter:
            counts = await asyncio.gather(*(one(client, i, words, generate) for i in range(requests)))
    return meter.work(sum(counts), len(counts))


async def achieved(program, examples, lm) -> tuple[EngineWork, int, int]:
    """The engine work of running ``program`` on every example at once, with its LM calls and errors."""
    errors = 0

    async def one(ex):
        nonlocal errors
        try:
            await program.acall(question=ex.question)
        except reasonflow.ReasonflowError:
            errors += 1

    async with EngineMeter(lm.base_url, lm.api_key) as meter:
        with reasonflow.session(lm), reasonflow.track_usage() as usage:
            await asyncio.gather(*(one(ex) for ex in examples))
    return meter.work(usage.sequences, usage.calls), usage.calls, errors


def utilisation(work: EngineWork, mixed: EngineWork, peak: float, guided_peak: float,
                guided_mixed: EngineWork | None = None, cap: int | None = None) -> dict:
    """Engine work over the mixed peak (and over its guided twin); the running sequences over the cap
    (the program's and the mixed peak's); generated tokens over the generated-only peak, and over its
    guided-decoding twin (the figures earlier runs printed)."""
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    return {"utilisation": ratio(work.tok_s, mixed.tok_s),
            "vs_guided_mixed": ratio(work.tok_s, guided_mixed.tok_s) if guided_mixed else None,
            "occupancy": ratio(work.mean_running, cap), "peak_occupancy": ratio(mixed.mean_running, cap),
            "generated_only": ratio(work.generated_tok_s, peak),
            "generated_only_vs_guided_peak": ratio(work.generated_tok_s, guided_peak)}


async def measure_program(name: str, examples, lm, url: str, cap: int, peak: float, guided_peak: float) -> dict:
    work, calls, errors = await achieved(reasonflow.program(name), examples, lm)
    (prompt, samples), (_, completion) = work.request_shape(), work.shape()
    shape = {"prompt_tokens": prompt, "completion_tokens": completion, "samples": samples}
    mixed = await mixed_peak(url, lm.served_model, cap, **shape)
    guided_mixed = await mixed_peak(url, lm.served_model, cap, **shape, guided=True)
    return {"program": name, "questions": len(examples), "lm_calls": calls, "errors": errors,
            "work": work.to_dict(), "mixed_peak": mixed.to_dict(), "guided_mixed_peak": guided_mixed.to_dict(),
            **utilisation(work, mixed, peak, guided_peak, guided_mixed, cap)}


def _shape(work: dict) -> str:
    return (f"{work['prompt_tokens_per_request']} prompt tokens computed, {work['sequences_per_request']} "
            f"sequences of {work['completion_tokens_per_sequence']} generated")


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--base-url")
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--cap", type=int, default=32, help="sequences in flight")
    parser.add_argument("--programs", default="gsm8k.sc@8,gsm8k.tot@5",
                        help="comma-separated programs; each runs on the dataset its name starts with")
    parser.add_argument("--split", choices=("on", "off", "both"), default="on",
                        help="n=k calls as k one-sample requests (on), as one request (off), or both in turn")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args()
    url = resolve_base_url(args.base_url)
    if "," in url:  # the mixed peak is one engine's; a pool's utilisation is each replica's
        parser.error(f"utilisation is measured on one engine; pass one replica's --base-url (got {url})")
    splits = {"on": (True,), "off": (False,), "both": (True, False)}[args.split]
    lms = {split: reasonflow.connect(url, temperature=0.0, config=reasonflow.LMConfig(
        max_sequences=args.cap, split_samples=split)) for split in splits}
    lm = lms[splits[0]]
    peak = asyncio.run(peak_throughput(url, args.cap, model=lm.served_model))
    guided = asyncio.run(peak_throughput(url, args.cap, model=lm.served_model, guided=True))
    print(f"generated-only peak at {args.cap} sequences in flight: {peak.tok_s:.1f} tok/s "
          f"(with guided JSON decoding: {guided.tok_s:.1f} tok/s)", flush=True)
    report = {"cap": args.cap, "peak": peak.to_dict(), "guided_peak": guided.to_dict(), "programs": []}
    for name, split in ((name, split) for name in args.programs.split(",") for split in splits):
        examples = load(name.split(".")[0], data_dir=args.data_dir, limit=args.questions)
        row = asyncio.run(measure_program(name, examples, lms[split], url, args.cap, peak.tok_s, guided.tok_s))
        row["split_samples"] = split
        report["programs"].append(row)
        work, mixed = row["work"], row["mixed_peak"]
        label = name if split else f"{name} (n=k as one request)"
        print(f"{label:>12}: utilisation {row['utilisation']:.2f} of the mixed peak ({work['tok_s']:.1f} of "
              f"{mixed['tok_s']:.1f} tok/s; {row['vs_guided_mixed']:.2f} of its guided twin, "
              f"{row['guided_mixed_peak']['tok_s']:.1f} tok/s; a request: {_shape(work)}, the peak's "
              f"{_shape(mixed)}); occupancy {_figure(row['occupancy'])} (the peak's {_figure(row['peak_occupancy'])}); "
              f"generated-only {row['generated_only']:.2f} ({work['generated_tok_s']:.1f} tok/s; "
              f"vs guided peak {row['generated_only_vs_guided_peak']:.2f}); {row['lm_calls']} calls, "
              f"{row['errors']} errors, {work['wall_s']:.1f} s", flush=True)
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
