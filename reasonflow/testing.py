"""Test doubles for reasonflow programs: ``ScriptedLM`` answers DSPy calls from a Python function.

    def respond(call):                        # call.inputs: the input fields of the predictor
        return {"reasoning": "2+2", "answer": 4}  # or a list of n dicts, or raw text
    lm = ScriptedLM(respond)
    with reasonflow.session(lm):
        program(question="...")

It is a real ``dspy.LM`` on the same call path as ``reasonflow.lm.VLLMLM`` (``OneRequestPerCall``: one
script call per DSPy call, ``n`` included, and no DSPy deprecation notice): the adapter formats
the prompt, the script's dicts are serialised as the JSON the model would produce, and each call
leaves a ``CallRecord`` (tokens estimated as characters / 4), so strategies, usage totals and traces
behave as they do against vLLM. ``lm.calls`` keeps every ``ScriptedCall`` (with its wall-clock
start), for assertions. Not a model: nothing is sampled; ``temperature`` only matters to the script.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

import dspy

from reasonflow.lm import OneRequestPerCall
from reasonflow.usage import CallRecord, next_call_id, record

_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with |\Z)", re.S)


@dataclass
class ScriptedCall:
    """One request as the script sees it."""

    messages: list[dict]
    n: int
    kwargs: dict
    started: float = field(default_factory=time.perf_counter)

    @property
    def inputs(self) -> dict[str, str]:
        """Input fields of the last user message, as the adapter rendered them (DSPy's ``[[ ## name ## ]]``
        sections, or the compact format's one-line ``name: value``)."""
        user = next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")
        fields = _FIELD.findall(user)
        if fields:
            return {name: value.strip() for name, value in fields}
        return dict(line.split(": ", 1) for line in user.splitlines() if ": " in line)

    @property
    def system(self) -> str:
        return next((m["content"] for m in self.messages if m["role"] == "system"), "")


class ScriptedLM(OneRequestPerCall, dspy.LM):
    """A ``dspy.LM`` whose completions come from ``script(call)``.

    ``script`` returns a dict (one completion, repeated n times), a list of n dicts or strings, or a
    string (raw completion text). ``finish_reason`` of every choice is ``"stop"`` unless the script
    returns ``(outputs, "length")``. ``delay_s`` (seconds, or a function of the call) makes async calls
    sleep, to exercise concurrency.
    ``logprobs(call, text)``, when given and the request asks for logprobs, returns the choice's
    tokens as ``[(token, [(alternative, logprob), ...]), ...]``; they come back in the OpenAI shape.
    """

    def __init__(self, script: Callable[[ScriptedCall], Any], *, delay_s: float | Callable[[ScriptedCall], float] = 0.0,
                 logprobs: Callable[[ScriptedCall, str], list] | None = None, **kwargs):
        super().__init__("openai/scripted", cache=False, temperature=kwargs.pop("temperature", 0.0), **kwargs)
        self.script = script
        self.delay_s = delay_s
        self.logprobs = logprobs
        self.calls: list[ScriptedCall] = []
        self._lock = threading.Lock()

    def forward(self, prompt=None, messages=None, **kwargs):
        call = self._call(prompt, messages, kwargs)
        delay = self.delay_s(call) if callable(self.delay_s) else self.delay_s
        if delay:
            time.sleep(delay)
        return self._respond(call)

    async def aforward(self, prompt=None, messages=None, **kwargs):
        call = self._call(prompt, messages, kwargs)
        delay = self.delay_s(call) if callable(self.delay_s) else self.delay_s
        if delay:
            await asyncio.sleep(delay)
        return self._respond(call)

    def _call(self, prompt, messages, kwargs) -> ScriptedCall:
        merged = {**self.kwargs, **kwargs}
        call = ScriptedCall(messages or [{"role": "user", "content": prompt}], merged.get("n") or 1, merged)
        with self._lock:
            self.calls.append(call)
        return call

    def _respond(self, call: ScriptedCall):
        started = time.perf_counter()
        result = self.script(call)
        finish = "stop"
        if isinstance(result, tuple):
            result, finish = result
        outputs = result if isinstance(result, list) else [result] * call.n
        texts = [o if isinstance(o, str) else json.dumps(o) for o in outputs]
        prompt_chars = sum(len(str(m.get("content", ""))) for m in call.messages)
        rec = CallRecord(id=next_call_id(), model="scripted", n=call.n, prompt_tokens=prompt_chars // 4,
                         completion_tokens=sum(len(t) for t in texts) // 4,
                         latency_s=time.perf_counter() - started, finish_reasons=[finish] * len(texts),
                         truncated=len(texts) if finish == "length" else 0)
        record(rec)
        if finish == "length":
            from reasonflow.errors import TruncatedError

            raise TruncatedError("scripted truncation", raw_text=texts[0] if texts else "")
        choices = [SimpleNamespace(index=i, finish_reason=finish, message=SimpleNamespace(content=t),
                                   logprobs=self._logprobs(call, t)) for i, t in enumerate(texts)]
        usage = {"prompt_tokens": rec.prompt_tokens, "completion_tokens": rec.completion_tokens,
                 "total_tokens": rec.prompt_tokens + rec.completion_tokens}
        return SimpleNamespace(choices=choices, usage=usage, model="scripted")

    def _logprobs(self, call: ScriptedCall, text: str):
        if not (self.logprobs and call.kwargs.get("logprobs")):
            return None
        return SimpleNamespace(content=[
            SimpleNamespace(token=token, logprob=alts[0][1] if alts else 0.0,
                            top_logprobs=[SimpleNamespace(token=t, logprob=lp) for t, lp in alts])
            for token, alts in self.logprobs(call, text)])
