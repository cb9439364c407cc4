"""What every search strategy shares: one run's state, the budget meter, and the sync/async bridge.

``SearchStrategy`` is a ``dspy.Module``. ``aforward(question=...)`` opens a ``Trace`` and a usage
collector, runs the subclass's ``search(run)`` under the budget's deadline, and returns
``Result(...).prediction()``: a ``dspy.Prediction(answer, reasoning, trace, usage, budget_exhausted, ...)``
whose ``result`` is the typed ``reasonflow.result.Result``. ``forward`` runs the same
coroutine to completion from synchronous code (in a worker thread if an event loop is already
running), so DSPy's optimizers and ``program(question=...)`` work unchanged.

A run stops when a bound in its ``Budget`` runs out (nodes, depth, LM calls, deadline): the
strategy's best answer so far is returned and the trace is marked ``budget_exhausted``. The LM-call
bound is checked before each round of requests, so a round that has started may finish past it by at
most that round's size. Per-call state lives in ``SearchRun``, never on the module, so one module can
serve concurrent requests.

Not guaranteed: a deadline cancels in-flight requests (the server stops generating for them), but a
Python hook that blocks the event loop is not interrupted.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, ClassVar

import dspy

from reasonflow.config import Budget
from reasonflow.options import Options
from reasonflow.replicas import replica_affinity
from reasonflow.result import Result, plain
from reasonflow.search.task import Task
from reasonflow.trace import Trace, otel
from reasonflow.usage import Usage, track_usage

# Set by callers (the server's event stream) to observe every trace change of runs started inside.
trace_listener: contextvars.ContextVar[Callable[[dict], None] | None] = contextvars.ContextVar(
    "reasonflow_trace_listener", default=None)


def run_sync(coro):
    """Run a coroutine to completion from sync code, even when this thread already runs a loop.

    Each thread keeps one event loop for all its calls (an ``asyncio.Runner``), so the LM's async
    client and its connections outlive the call: a fresh loop per call would build a new client, SSL
    context and connection every time. The caller's context variables (``dspy.context``, usage
    collectors) go with each call, as with ``asyncio.run``. A call that raises (Ctrl-C included) or
    leaves tasks behind closes its loop the way ``asyncio.run`` does: what is left is cancelled and
    worker threads are waited for. Loops are also closed at exit, and when their thread has ended.
    Called inside a running loop, it runs on a worker thread's loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        thread = threading.current_thread()
        runner = _thread_runner(thread)
        try:
            value = runner.run(coro, context=contextvars.copy_context())
        except BaseException:
            _close_runner(_runners.pop(thread))
            raise
        if any(not task.done() for task in asyncio.all_tasks(runner.get_loop())):
            _close_runner(_runners.pop(thread))
        return value
    result: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def target():
        try:
            result["value"] = ctx.run(asyncio.run, coro)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=target, name="reasonflow-run-sync")
    worker.start()
    worker.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


_runners: dict[threading.Thread, asyncio.Runner] = {}
_runners_lock = threading.Lock()


def _thread_runner(thread: threading.Thread) -> asyncio.Runner:
    runner = _runners.get(thread)
    if runner is None:
        with _runners_lock:
            for ended in [t for t in _runners if not t.is_alive()]:
                _close_runner(_runners.pop(ended))
            runner = _runners[thread] = asyncio.Runner()
    return runner


def _close_runner(runner: asyncio.Runner) -> None:
    try:
        runner.close()
    except RuntimeError:  # its loop is running (a daemon thread at exit): the process is ending
        pass


@atexit.register
def _close_runners() -> None:
    with _runners_lock:
        while _runners:
            _close_runner(_runners.popitem()[1])


@dataclass
class SearchRun:
    """The state of one call: its trace, usage, budget clock and best answer so far."""

    question: str
    trace: Trace
    usage: Usage
    budget: Budget
    started: float = field(default_factory=time.monotonic)
    exhausted: str | None = None  # which bound ran out
    best_answer: Any = None
    best_reasoning: str = ""
    best_node: str | None = None
    best_score: float = float("-inf")
    # What a strategy reports besides its answer (see ``reasonflow.result.Result``):
    error: BaseException | None = None  # why there is no answer (a ParseError, a NoAnswerError, ...)
    samples: list | None = None
    votes: list | None = None  # [(answer, count), ...]
    scores: list | None = None
    sample_errors: list | None = None
    programs: list | None = None
    selections: dict | None = None  # PoT@k: the answer each selection rule picks from the same samples
    confidences: list | None = None  # PoT@k: each sample's sequence confidence (from its logprobs)

    def remaining_s(self) -> float:
        return self.budget.deadline_s - (time.monotonic() - self.started)

    def out_of_budget(self, new_nodes: int = 0, new_calls: int = 0, depth: int = 0) -> bool:
        """True (and records which bound) when starting work of this size would pass a bound."""
        b = self.budget
        if self.remaining_s() <= 0:
            self.exhausted = "deadline"
        elif len(self.trace) + new_nodes > b.max_nodes:
            self.exhausted = "max_nodes"
        elif self.usage.calls + new_calls > b.max_lm_calls:
            self.exhausted = "max_lm_calls"
        elif depth > b.max_depth:
            self.exhausted = "max_depth"
        return self.exhausted is not None

    def offer(self, answer: Any, score: float, node: str | None, reasoning: str = "") -> None:
        """Keep ``answer`` if it scores higher than the best so far (ties keep the earlier one)."""
        if answer is not None and score > self.best_score:
            self.best_answer, self.best_score, self.best_node, self.best_reasoning = answer, score, node, reasoning


class SearchStrategy(dspy.Module):
    """Base of all strategies. Subclasses set ``name`` and implement ``async search(run)``."""

    # The facts callers read (``reasonflow.registry.register_strategy`` checks that they agree):
    name: ClassVar[str] = "strategy"
    Options: ClassVar[type[Options]] = Options  # what a caller (and, within limits, a request) may set
    size_option: ClassVar[str | None] = None  # the option ``@N`` in a program name sets
    grid: ClassVar[tuple[dict, ...]] = ({},)  # knob settings ``reasonflow.compile`` scores after prompts

    def __init__(self, task: Task, *, budget: Budget = Budget(), program: str | None = None, **options):
        """``options`` become ``self.options`` (a frozen ``Options``; ``ConfigError`` when one is unknown
        or out of range), and each one a (read-only by convention) attribute of the same name: to change
        an option, build a new program."""
        super().__init__()
        self.task = task
        self.budget = budget
        self.program_name = program or f"{task.name}.{self.name}"
        self.options = self.Options.build(**options)
        for f in fields(self.options):
            setattr(self, f.name, getattr(self.options, f.name))

    def settings(self) -> dict:
        """The strategy's knobs, recorded in the trace and in compiled manifests."""
        return {"budget": asdict(self.budget), **{f.name: getattr(self.options, f.name) for f in fields(self.options)}}

    def width(self) -> int:
        """Sequences one question can have in flight at once (a request with n=k counts k): the
        concurrency cap at which utilisation figures measure the engine's peak."""
        return 1

    async def search(self, run: SearchRun) -> None:
        raise NotImplementedError

    def forward(self, question: str, **kwargs):
        return run_sync(self.aforward(question=question, **kwargs))

    async def aforward(self, question: str, **kwargs):
        spans = otel.recorder()  # None unless OpenTelemetry export is enabled
        listener = trace_listener.get()
        trace = Trace(program=self.program_name, strategy=self.name, config=plain(self.settings()),
                      question=question, listener=spans.listen(listener) if spans else listener)
        # one run, one replica (its prefix cache)
        with track_usage() as usage, replica_affinity(), spans.calls() if spans else nullcontext():
            run = SearchRun(question=question, trace=trace, usage=usage, budget=self.budget)
            try:
                await asyncio.wait_for(self.search(run), timeout=max(run.remaining_s(), 0.001))
            except (asyncio.TimeoutError, TimeoutError):
                run.exhausted = run.exhausted or "deadline"
            except BaseException as exc:
                if spans:
                    spans.export(trace, error=exc)
                raise
        if run.best_node is not None:
            trace.update(run.best_node, status="answer", answer=plain(run.best_answer))
        totals = usage.to_dict()
        trace.finish(answer=plain(run.best_answer), usage=totals, budget_exhausted=run.exhausted is not None,
                     answer_node=run.best_node)
        if run.exhausted:
            trace.graph.graph["exhausted_by"] = run.exhausted
        if spans:
            spans.export(trace)
        tupled = {name: None if getattr(run, name) is None else tuple(getattr(run, name))
                  for name in ("samples", "scores", "sample_errors", "programs", "confidences")}
        votes = None if run.votes is None else tuple((a, n) for a, n in run.votes)
        return Result(answer=run.best_answer, reasoning=run.best_reasoning, error=run.error,
                      budget_exhausted=run.exhausted is not None, exhausted_by=run.exhausted, votes=votes,
                      selections=run.selections, usage=totals, trace=trace, **tupled).prediction()
