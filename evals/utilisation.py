"""Engine utilisation of SC@8 and ToT(b=5) on GSM8K: the work the engine did for the program, per
second, divided by what it can do at the same concurrency cap, both measured in this run.

    python evals/utilisation.py --data-dir ../shared/data [--questions 10] [--cap 32] [--base-url URL]
                                [--programs gsm8k.sc@8,gsm8k.tot@5] [--json]

Two figures per program:

- ``utilisation`` (the engine's real work): prompt tokens the engine computed (the prompt tokens less
  the prefix-cache hits it reported) plus generated tokens, per second, over the **mixed peak**: the
  same count for ``cap`` synthetic requests in flight shaped like the program's average sequence
  (its computed prompt tokens and its generated tokens per sequence), each prompt starting with its
  own number so the cache serves none of it past the chat template. Measured right after the program.
- ``vs_guided_mixed`` (how much of the engine the orchestrator leaves unused): the same engine work
  over the **guided mixed peak**, the mixed peak's requests under a JSON-schema response format
  (``throughput.GUIDED_FORMAT``: one long string field), since every reasonflow program decodes under
  a grammar and its per-token cost is the engine's, not the caller's (``evals/guided_decoding.py``
  compares the backends).
- ``generated_only`` (the old figure, kept so earlier numbers stay comparable): generated tok/s over
  ``peak_throughput`` at ``cap`` single-sequence requests of 64 tokens, measured first. Its peak under
  guided JSON decoding (what reasonflow's programs use) is printed beside it.

The cap is counted in sequences in flight (one request with n=8 is 8 sequences: vLLM batches them
like 8 requests) and enforced by the LM itself (``LMConfig(max_sequences=cap)``): all questions are
admitted at once and their requests wait at the gate, so the engine never sees more than ``cap``
sequences, and one question's barrier (a ToT round waiting for its slowest request) does not idle
the engine while other questions have work.

Not guaranteed: the mixed peak matches the program's prefill/decode mix on average, not its prompt
lengths one by one (prefill per token grows a little with prompt length); a prompt's words are not
exactly its tokens, so the peak's shape is printed next to the program's. Cached-token counts need
vLLM's ``--enable-prompt-tokens-details``; without them every prompt token counts as computed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass

import openai

import reasonflow
from reasonflow.data import load
from reasonflow.engine.throughput import GUIDED_FORMAT, peak_throughput
from reasonflow.lm import resolve_base_url

FILLER = " ship"  # one token per repeat in common tokenizers; the prompt's length in words


@dataclass(frozen=True)
class EngineWork:
    """Tokens the engine computed over a wall time, and over how many sequences."""

    sequences: int
    prompt_tokens: int  # computed: prefix-cache hits excluded
    completion_tokens: int
    wall_s: float

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

    def to_dict(self) -> dict:
        prompt, completion = self.shape()
        return {**asdict(self), "tok_s": round(self.tok_s, 2), "generated_tok_s": round(self.generated_tok_s, 2),
                "prompt_tokens_per_sequence": round(prompt, 1), "completion_tokens_per_sequence": round(completion, 1)}


async def mixed_peak(base_url: str, model: str, cap: int, *, prompt_tokens: float, completion_tokens: float,
                     rounds: int = 2, api_key: str = "EMPTY", guided: bool = False) -> EngineWork:
    """Engine work per second with ``cap`` requests in flight for ``rounds`` rounds, each with a
    prompt of about ``prompt_tokens`` tokens no other request shares and exactly ``completion_tokens``
    generated (``ignore_eos``; with ``guided``, under ``GUIDED_FORMAT`` instead, whose long string
    field runs to ``max_tokens``: EOS is the grammar's)."""
    words, generate = max(1, round(prompt_tokens)), max(1, round(completion_tokens))
    gate = asyncio.Semaphore(cap)

    async def one(client, i: int) -> tuple[int, int]:
        async with gate:
            shape = {"response_format": GUIDED_FORMAT} if guided else \
                {"extra_body": {"ignore_eos": True, "min_tokens": generate}}
            resp = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"{i}:{FILLER * words}"}], max_tokens=generate,
                temperature=1.0, **shape)
            return computed_prompt_tokens(resp.usage), resp.usage.completion_tokens

    async with openai.AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=600, max_retries=0) as client:
        started = time.perf_counter()
        counts = await asyncio.gather(*(one(client, i) for i in range(cap * rounds)))
    wall = time.perf_counter() - started
    return EngineWork(len(counts), sum(p for p, _ in counts), sum(c for _, c in counts), wall)


def computed_prompt_tokens(usage) -> int:
    details = getattr(usage, "prompt_tokens_details", None)
    return usage.prompt_tokens - ((getattr(details, "cached_tokens", 0) or 0) if details else 0)


async def achieved(program, examples, lm) -> tuple[EngineWork, int, int]:
    """The engine work of running ``program`` on every example at once, with its LM calls and errors."""
    errors = 0

    async def one(ex):
        nonlocal errors
        try:
            await program.acall(question=ex.question)
        except reasonflow.ReasonflowError:
            errors += 1

    started = time.perf_counter()
    with reasonflow.session(lm), reasonflow.track_usage() as usage:
        await asyncio.gather(*(one(ex) for ex in examples))
    work = EngineWork(usage.sequences, usage.computed_prompt_tokens, usage.completion_tokens,
                      time.perf_counter() - started)
    return work, usage.calls, errors


def utilisation(work: EngineWork, mixed: EngineWork, peak: float, guided_peak: float,
                guided_mixed: EngineWork | None = None) -> dict:
    """Engine work over the mixed peak (and over its guided twin); generated tokens over the
    generated-only peak, and over its guided-decoding twin (the figures earlier runs printed)."""
    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    return {"utilisation": ratio(work.tok_s, mixed.tok_s),
            "vs_guided_mixed": ratio(work.tok_s, guided_mixed.tok_s) if guided_mixed else None,
            "generated_only": ratio(work.generated_tok_s, peak),
            "generated_only_vs_guided_peak": ratio(work.generated_tok_s, guided_peak)}


async def measure_program(name: str, examples, lm, url: str, cap: int, peak: float, guided_peak: float) -> dict:
    work, calls, errors = await achieved(reasonflow.program(name), examples, lm)
    prompt, completion = work.shape()
    mixed = await mixed_peak(url, lm.served_model, cap, prompt_tokens=prompt, completion_tokens=completion)
    guided_mixed = await mixed_peak(url, lm.served_model, cap, prompt_tokens=prompt, completion_tokens=completion,
                                    guided=True)
    return {"program": name, "questions": len(examples), "lm_calls": calls, "errors": errors,
            "work": work.to_dict(), "mixed_peak": mixed.to_dict(), "guided_mixed_peak": guided_mixed.to_dict(),
            **utilisation(work, mixed, peak, guided_peak, guided_mixed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--base-url")
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--cap", type=int, default=32, help="sequences in flight")
    parser.add_argument("--programs", default="gsm8k.sc@8,gsm8k.tot@5",
                        help="comma-separated programs; each runs on the dataset its name starts with")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args()
    url = resolve_base_url(args.base_url)
    if "," in url:  # the mixed peak is one engine's; a pool's utilisation is each replica's
        parser.error(f"utilisation is measured on one engine; pass one replica's --base-url (got {url})")
    lm = reasonflow.connect(url, temperature=0.0, config=reasonflow.LMConfig(max_sequences=args.cap))
    peak = asyncio.run(peak_throughput(url, args.cap, model=lm.served_model))
    guided = asyncio.run(peak_throughput(url, args.cap, model=lm.served_model, guided=True))
    print(f"generated-only peak at {args.cap} sequences in flight: {peak.tok_s:.1f} tok/s "
          f"(with guided JSON decoding: {guided.tok_s:.1f} tok/s)", flush=True)
    report = {"cap": args.cap, "peak": peak.to_dict(), "guided_peak": guided.to_dict(), "programs": []}
    for name in args.programs.split(","):
        examples = load(name.split(".")[0], data_dir=args.data_dir, limit=args.questions)
        row = asyncio.run(measure_program(name, examples, lm, url, args.cap, peak.tok_s, guided.tok_s))
        report["programs"].append(row)
        work, mixed = row["work"], row["mixed_peak"]
        print(f"{name:>12}: utilisation {row['utilisation']:.2f} of the mixed peak ({work['tok_s']:.1f} of "
              f"{mixed['tok_s']:.1f} tok/s; {row['vs_guided_mixed']:.2f} of its guided twin, "
              f"{row['guided_mixed_peak']['tok_s']:.1f} tok/s; prompt+generated per sequence {work['prompt_tokens_per_sequence']}"
              f"+{work['completion_tokens_per_sequence']}, peak's {mixed['prompt_tokens_per_sequence']}"
              f"+{mixed['completion_tokens_per_sequence']}); generated-only {row['generated_only']:.2f} "
              f"({work['generated_tok_s']:.1f} tok/s; vs guided peak {row['generated_only_vs_guided_peak']:.2f}); {row['lm_calls']} calls, {row['errors']} errors, "
              f"{work['wall_s']:.1f} s", flush=True)
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
