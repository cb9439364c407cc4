"""One predictor call on behalf of one search node, with its usage and failures kept per node.

``await predict(predictor, n=3, question=..., steps=...)`` sends ONE request for n samples and returns
a ``NodeCall``: the completions (as ``dspy.Prediction``s), the call ids and token counts to record on
the node, and the error if the model's output was unusable (truncated or unparseable). Those two
errors prune a node and the search goes on; every other error (timeouts, a dead server) propagates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dspy

from reasonflow.errors import ParseError, TruncatedError
from reasonflow.usage import track_usage

DEFAULT_SAMPLE_TEMPERATURE = 0.7  # used when n > 1 and no temperature is given


@dataclass
class NodeCall:
    completions: list[dspy.Prediction] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: ParseError | TruncatedError | None = None  # the exception itself (``errors.describe`` to show it)

    def node_attrs(self) -> dict:
        """Usage attributes for ``Trace.add_node``/``update``."""
        return {"calls": self.call_ids, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "latency_s": round(self.latency_s, 4)}


async def predict(predictor: dspy.Module, *, n: int = 1, temperature: float | None = None,
                  lm_kwargs: dict | None = None, **inputs) -> NodeCall:
    """One request; ``lm_kwargs`` adds per-call settings (a per-state ``response_format``, logprobs)."""
    config: dict = dict(lm_kwargs or {})
    if n > 1:
        config.update(n=n, temperature=temperature if temperature else DEFAULT_SAMPLE_TEMPERATURE)
    elif temperature is not None:
        config["temperature"] = temperature
    result = NodeCall()
    with track_usage() as usage:
        try:
            pred = await predictor.acall(**inputs, config=config) if config else await predictor.acall(**inputs)
            result.completions = [pred.completions[i] for i in range(len(pred.completions))]
        except (ParseError, TruncatedError) as exc:
            result.error = exc
    result.call_ids = [r.id for r in usage.records]
    result.prompt_tokens, result.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    result.latency_s = usage.latency_s
    return result
