"""The Math-Verify pool keeps its word under load (issue #13, point 10): with 8 threads and a queue of
pathological inputs every call returns within its budget (the wait for a worker included), and the
same input gets the same verdict every time. Before: \\frac{1}{0} and 10k nested braces took 130 s
against timeout_s=5 under 8 threads, and an integral was True in one thread and False in another."""

from __future__ import annotations

import threading
import time

import pytest

from reasonflow.checking._pool import WorkerPool
from reasonflow.checking.latex import DEFAULT_CHECK_START_TIMEOUT_S, DEFAULT_CHECK_WORKER_MEMORY_BYTES, anchored

BUDGET_S = 2.0
START_SLACK_S = 4.0  # a fresh worker importing sympy after a kill, on a loaded 2-core machine
INTEGRAL = (anchored(r"\int_0^1 x^2 \, dx"), anchored(r"\frac{1}{3}"))


def braces(i: int) -> str:
    return anchored("{" * 10_000 + str(i) + "}" * 10_000)  # distinct, so no verdict is shared


def run_threads(pool: WorkerPool, work: list[list[tuple[str, str]]]) -> list[list[tuple[bool, float]]]:
    results: list[list[tuple[bool, float]]] = [[] for _ in work]

    def one(i: int) -> None:
        for pred, gold in work[i]:
            started = time.monotonic()
            verdict = pool.equal(pred, gold, BUDGET_S)
            results[i].append((verdict, time.monotonic() - started))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a check never returned"
    return results


@pytest.fixture()
def pool():
    pool = WorkerPool(2, DEFAULT_CHECK_START_TIMEOUT_S, DEFAULT_CHECK_WORKER_MEMORY_BYTES)
    pool.warm()
    yield pool
    pool.close()


def test_the_budget_holds_with_8_threads_of_pathological_inputs(pool):
    work = [[(braces(10 * t + j), "1"), (anchored(r"\frac{1}{0}"), anchored(str(t))), (braces(10 * t + j + 5), "2")]
            for t in range(8) for j in range(1)]
    results = run_threads(pool, work)
    times = [elapsed for thread in results for _, elapsed in thread]
    verdicts = [verdict for thread in results for verdict, _ in thread]
    assert not any(verdicts)
    assert max(times) < BUDGET_S + START_SLACK_S, sorted(times)[-5:]  # before: tens of seconds in the queue


def test_the_same_input_gets_the_same_verdict_under_load(pool):
    alone = pool.equal(*INTEGRAL, BUDGET_S)
    work = [[(braces(100 + t), "1"), INTEGRAL, (anchored(r"\frac{1}{0}"), "1"), INTEGRAL] for t in range(8)]
    results = run_threads(pool, work)
    integral = [thread[i][0] for thread in results for i in (1, 3)]
    assert alone is True and integral == [alone] * len(integral)
    times = [elapsed for thread in results for _, elapsed in thread]
    assert max(times) < BUDGET_S + START_SLACK_S


def test_verdicts_the_worker_gives_are_kept_and_a_wall_clock_cut_is_not(pool):
    import os
    import signal

    assert pool.equal(anchored("2"), anchored("2"), BUDGET_S) is True
    started = time.monotonic()
    assert pool.equal(anchored("2"), anchored("2"), BUDGET_S) is True
    assert time.monotonic() - started < 0.05  # the kept verdict, not a second check
    for worker in list(pool._idle):
        os.kill(worker.proc.pid, signal.SIGSTOP)  # stuck where no CPU budget can end the check
    try:
        assert pool.equal(anchored("3"), anchored("3"), 1.0) is False  # cut by the wall clock: False ...
    finally:
        for worker in list(pool._all):
            try:
                os.kill(worker.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert pool.equal(anchored("3"), anchored("3"), BUDGET_S) is True  # ... and not kept
    pool.forget()
    assert len(pool._memo) == 0
