"""Measure an endpoint's generation throughput (completion tokens per second) at a concurrency.

``peak_throughput(base_url, concurrency)`` keeps ``concurrency`` chat requests in flight, each asking
for exactly ``max_tokens`` tokens (``ignore_eos``), for ``rounds`` rounds, and divides the completion
tokens by the wall time. This is the denominator of every utilisation figure: achieved tok/s of a
program divided by the peak at the same concurrency cap, measured in the same run.

For replicas ("u1,u2") the concurrency is split across them (as evenly as it goes) and all are
measured at once: the pool's peak, with the tokens summed over the longest replica's wall time.

Not guaranteed: on a shared machine figures vary run to run; compare ratios from one run, not
absolute numbers across runs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

import openai

PROMPT = "Write a long story about a lighthouse keeper who counts ships."


@dataclass(frozen=True)
class Throughput:
    concurrency: int
    requests: int
    completion_tokens: int
    wall_s: float

    @property
    def tok_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "tok_s": round(self.tok_s, 2)}


# A long free-text field under guided decoding: the peak with the grammar's per-token cost included.
GUIDED_FORMAT = {"type": "json_schema", "json_schema": {"name": "story", "strict": True, "schema": {
    "type": "object", "properties": {"story": {"type": "string", "maxLength": 4000}},
    "required": ["story"], "additionalProperties": False}}}


async def peak_throughput(base_url: str, concurrency: int, *, model: str | None = None, max_tokens: int = 64,
                          rounds: int = 2, api_key: str = "EMPTY", guided: bool = False) -> Throughput:
    """Completion tok/s with ``concurrency`` requests in flight for ``rounds`` rounds. ``guided``
    adds a JSON-schema response format, as reasonflow's programs send (EOS is then left to the
    grammar, so a request may stop before ``max_tokens``)."""
    urls = [u.strip() for u in base_url.split(",") if u.strip()]
    if len(urls) > 1:
        shares = [concurrency // len(urls) + (i < concurrency % len(urls)) for i in range(len(urls))]
        parts = await asyncio.gather(*(peak_throughput(url, share, model=model, max_tokens=max_tokens, rounds=rounds,
                                                       api_key=api_key, guided=guided)
                                       for url, share in zip(urls, shares) if share))
        return Throughput(concurrency, sum(p.requests for p in parts), sum(p.completion_tokens for p in parts),
                          max(p.wall_s for p in parts))
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=600, max_retries=0)
    if model is None:
        model = (await client.models.list()).data[0].id
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> int:
        async with gate:
            extra = {} if guided else {"ignore_eos": True, "min_tokens": max_tokens}
            resp = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": f"{PROMPT} ({i})"}], max_tokens=max_tokens,
                temperature=1.0, extra_body=extra, **({"response_format": GUIDED_FORMAT} if guided else {}))
            return resp.usage.completion_tokens

    try:
        started = time.perf_counter()
        tokens = await asyncio.gather(*(one(i) for i in range(concurrency * rounds)))
        wall = time.perf_counter() - started
    finally:
        await client.close()
    return Throughput(concurrency, len(tokens), sum(tokens), wall)
