"""ProgramOfThought(k): the LM writes k short Python programs (ONE ``n=k`` request), the sandbox runs them.

    propose: k programs at temperature T (k=1: one program at the model's default temperature),
             each storing its result in a variable named ``answer``
    execute: every program in ``reasonflow.sandbox`` concurrently (timeout, memory and CPU bounds)
    vote:    majority over the *executed* answers by the task's equivalence; failed runs are left
             out and counted (tie-break: the cluster whose first member came first, as in SC)

With k > 1 this is PoT composed with self-consistency (``gsm8k.pot@8``). The request then asks for
token logprobs, and ``selections`` reports two rules over the same samples: ``majority`` (the
default answer) and ``logprob`` (``checking.weighted_vote``, each answer weighted by its program's
``search.task.sequence_confidence``; with no logprobs it is the majority); ``select="logprob"``
answers with the second. A task with a ``step_pattern`` bounds the programs: the request carries
the pattern (``search.actions.step_format``, guided decoding) and a program that does not match it
is refused before it runs (``OutOfGrammar``). Returns ``answer``,
``reasoning`` (the winning program), ``votes`` ([answer, count] in first-appearance order),
``samples`` (each program's executed answer, None where it failed), ``errors`` (each program's
sandbox error, None where it ran), ``failed`` (how many failed) and ``programs``. The trace is the
question with one node per program: its code, answer, and status ``terminal`` (ran), ``pruned``
(failed, with ``reason``) or ``selected``/``answer`` (in the winning cluster).

A program whose answer is a non-finite number (``float('nan')``, ``inf``) counts as failed. ``k > 1``
at temperature 0 is refused with ``ConfigError``. Where the host has no jail for code and the user did
not opt in to unisolated code, the search raises ``SandboxUnavailable`` before any LM call.

Not guaranteed: the sandbox's own limits (see ``reasonflow.sandbox``); an answer is only as good as
the program that computed it; with every program failing the answer is None and ``error`` says why.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Annotated, Literal

import dspy

from reasonflow.checking.answers import unusable_reason, usable
from reasonflow.checking.vote import weighted_vote
from reasonflow.errors import ConfigError, NoAnswerError, SandboxError, describe
from reasonflow.options import Local, Options, Samples, Temperature
from reasonflow.registry import register_strategy
from reasonflow.sandbox import (
    DEFAULT_SANDBOX_CPU_S, DEFAULT_SANDBOX_MEMORY_MB, DEFAULT_SANDBOX_TIMEOUT_S, arun_code, check_limits, require,
)
from reasonflow.search import SearchRun, SearchStrategy, Task, predict, tally
from reasonflow.search.actions import step_format
from reasonflow.search.task import sequence_confidence
from reasonflow.strategies.cot import _text
from reasonflow.strategies.sc import check_sampling, offer_vote

DEFAULT_PROGRAM_MAX_CHARS = 800  # bound on the generated code, so the JSON closes
MAX_ERROR_CHARS = 300  # per program, in the trace and in ``errors``


class WriteProgram(dspy.Signature):
    """Write a short Python program that computes the answer and stores it in a variable named answer.
    Use plain arithmetic and, only if needed, the modules math, fractions, decimal, statistics,
    itertools, functools, collections and re. Do not read input, files or the network, and do not print."""

    question: str = dspy.InputField()
    code: str = dspy.OutputField(desc="Python code that ends by assigning the result to `answer`",
                                 max_chars=DEFAULT_PROGRAM_MAX_CHARS)


_FENCE = re.compile(r"^\s*```[\w+-]*[ \t]*\n(.*?)\n?```\s*$", re.S)


def strip_fences(code: str) -> str:
    """The program inside a Markdown code fence (```python ... ```), or the text as is."""
    match = _FENCE.match(code)
    return match.group(1) if match else code


@dataclass(frozen=True)
class PoTOptions(Options):
    k: Samples = 1  # programs, in one n=k request
    temperature: Temperature = 0.7
    select: Literal["majority", "logprob"] = "majority"  # the rule that picks the answer among the k (see above)
    # Python only: the signature and the sandbox's limits are the caller's (the server's) to set, never a request's
    signature: Annotated[type, Local] = WriteProgram
    timeout_s: Annotated[float, Local] = DEFAULT_SANDBOX_TIMEOUT_S
    cpu_s: Annotated[int, Local] = DEFAULT_SANDBOX_CPU_S
    memory_mb: Annotated[int, Local] = DEFAULT_SANDBOX_MEMORY_MB

    def __post_init__(self):
        super().__post_init__()
        if "code" not in self.signature.output_fields or "question" not in self.signature.input_fields:
            raise ConfigError(f"signature {self.signature.__name__} needs a `question` input and a `code` output")
        check_limits(self.timeout_s, self.cpu_s, self.memory_mb)
        check_sampling(self.k, self.temperature)


@register_strategy
class ProgramOfThought(SearchStrategy):
    name = "pot"
    Options = PoTOptions
    size_option = "k"
    grid = ({"k": 1}, {"k": 4})
    runs_code = True  # model-written code: the server needs a sandbox for it

    def __init__(self, task: Task, **options):
        super().__init__(task, **options)
        self.limits = {"timeout_s": self.timeout_s, "cpu_s": self.cpu_s, "memory_mb": self.memory_mb}
        self.write = dspy.Predict(self.signature)

    def width(self) -> int:
        return self.k

    def settings(self) -> dict:
        return {**super().settings(), "signature": self.signature.__name__}

    async def search(self, run: SearchRun) -> None:
        require()  # SandboxUnavailable now, before the LM writes programs that could not run
        root = run.trace.add_node(text=run.question, status="expanded")
        temperature = self.temperature if self.k > 1 else None
        grammar = step_format(self.task, self.write.signature, run.question, [])  # None: free code
        lm_kwargs = {**({"response_format": grammar} if grammar else {}), **({"logprobs": True} if self.k > 1 else {})}
        call = await predict(self.write, n=self.k, temperature=temperature, lm_kwargs=lm_kwargs or None,
                             question=run.question)
        run.trace.update(root, **call.node_attrs())  # one request wrote every program: its usage sits on the root
        if call.error:
            run.trace.update(root, status="pruned", text=f"{run.question}\n\n{describe(call.error)}")
            run.error, run.votes, run.samples, run.sample_errors, run.programs = call.error, [], [None] * self.k, [], []
            return
        programs = [strip_fences(str(c.code or "")) for c in call.completions]
        pattern = self.task.step_pattern(run.question, []) if self.task.step_pattern else None
        outcomes = await asyncio.gather(*(self.execute(p) if pattern is None or re.fullmatch(pattern, p)
                                          else _out_of_grammar() for p in programs))
        answers, errors = [a for a, _ in outcomes], [e for _, e in outcomes]
        nodes = [run.trace.add_node(text=p, parent=root, status="pruned" if e else "terminal", action=f"program {i}",
                                    answer=_text(a), **({"reason": e} if e else {}))
                 for i, (p, a, e) in enumerate(zip(programs, answers, errors))]
        run.sample_errors, run.programs = errors, programs
        failed = sum(e is not None for e in errors)
        chosen = None
        if self.k > 1:
            confidences = [sequence_confidence(getattr(c, "logprobs", None)) for c in call.completions]
            weighted = weighted_vote(answers, confidences, self.task.equivalent)
            run.selections = {"majority": tally(self.task, answers).answer, "logprob": weighted.answer}
            run.confidences = [None if c is None else round(c, 6) for c in confidences]
            if self.select == "logprob" and weighted.answer is not None:
                chosen = weighted
        offer_vote(run, self.task, answers, nodes, programs,
                   lambda: NoAnswerError(f"no program produced an answer ({failed} of {len(programs)} failed)"),
                   chosen=chosen)

    async def execute(self, code: str) -> tuple[object, str | None]:
        """Run one program: (its answer, None), or (None, the sandbox error) when it failed."""
        if not code.strip():
            return None, "SandboxNoAnswer: the model wrote no code"
        try:
            result = await arun_code(code, **self.limits)
        except SandboxError as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            return None, f"{type(exc).__name__}: {reason}"[:MAX_ERROR_CHARS]
        if not usable(result.answer):
            return None, f"SandboxNoAnswer: {unusable_reason(result.answer)}"[:MAX_ERROR_CHARS]
        return result.answer, None


async def _out_of_grammar() -> tuple[None, str]:
    return None, "OutOfGrammar: the program does not match the task's step pattern"
