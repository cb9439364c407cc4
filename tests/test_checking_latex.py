"""extract_boxed and math_equal: Math-Verify's verdicts, and the process bound (ARCHITECTURE §5 case 11)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time

import pytest

from reasonflow.checking import extract_boxed, math_equal
from reasonflow.checking._pool import WorkerPool
from reasonflow.checking.latex import _POOL, DEFAULT_CHECK_WORKERS, anchored
from reasonflow.errors import ConfigError

BUDGET_S = 1.0
TOWER = r"10^{10^{10^{10}}}"  # sympy tries to evaluate it and never finishes
NESTED = "\\frac{1}{" * 500 + "2" + "}" * 500  # takes Math-Verify several seconds to parse


def _warm_every_worker() -> None:
    """Make every pool worker ready, so a timing measures the check and not a worker's sympy import
    (a replacement worker starts in the background after each timeout)."""
    _POOL.warm()
    assert len(_POOL._all) == DEFAULT_CHECK_WORKERS and all(w.ready for w in _POOL._all)


@pytest.fixture(scope="module", autouse=True)
def warm_pool():
    _warm_every_worker()


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
        (r"\boxed{\boxed{3}}", "3"),  # the innermost box opens last
        (r"first \boxed{3}, then \boxed{4}", "4"),
        (r"\fbox{ 5 }", "5"),
        (r"\boxed {a{b}c}", "a{b}c"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces do not count
        (r"\boxed{7} then \boxed{8", "7"),  # an unclosed (truncated) box is skipped
        ("no box here", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_boxed_returns_the_last_closed_box(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "text, wrapped",
    [
        ("(1,2]", True),
        (r"\dfrac{3}{4}", True),
        (r"\begin{pmatrix} -1 \\ 2 \end{pmatrix}", True),
        (r"10\text{ inches}", True),
        ("18 dollars", False),
        ("The answer is 42.", False),
        (r"$x$", False),
        (r"\boxed{3}", False),
        (r"\$18.00", True),  # an escaped dollar is not an anchor
    ],
)
def test_anchored_wraps_bare_latex_but_not_prose_or_anchored_text(text, wrapped):
    assert anchored(text) == (f"${text}$" if wrapped else text)


@pytest.mark.parametrize(
    "pred, gold",
    [
        (r"\boxed{\frac{1}{2}}", "0.5"),
        ("0.5", r"\frac{1}{2}"),
        (r"\boxed{\boxed{3}}", "3"),
        ("x=3", "3"),
        ("3", "x=3"),
        ("(1,2]", "(1, 2]"),
        (r"(-\infty, 3)", r"(-\infty,3)"),
        (r"\dfrac{3}{4}", "0.75"),
        (r"\sqrt{2}/2", r"\frac{\sqrt2}{2}"),
        ("x^2+2x+1", "(x+1)^2"),
        (r"\{1,2\}", r"\{2,1\}"),
        ("1,000", "1000"),
        ("So the final answer is 7 apples.", "7"),
        (r"The final answer is $\frac{1}{2}$.", "0.5"),
        (r"\text{(B)}", "B"),
        (r"\begin{pmatrix} -1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} -1 \\ 2 \end{pmatrix}"),
    ],
)
def test_math_equal_accepts_equivalent_forms(pred, gold):
    assert math_equal(pred, gold)


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("2", "3"),
        ("(1,2]", "(1,2)"),
        ("[1,2]", "[1,2)"),
        ("x=3", "x=4"),
        ("0.33", r"\frac{1}{3}"),
        ("hello", "3"),
        (r"\boxed{3} and later \boxed{4}", "3"),  # Math-Verify reads nearby boxes as a set {3, 4}
    ],
)
def test_math_equal_rejects_different_answers(pred, gold):
    assert not math_equal(pred, gold)


def test_math_equal_percent_matches_both_its_value_and_its_number():
    # Math-Verify's leniency, asserted so a change in it is noticed: 50\% equals 0.5 AND 50.
    assert math_equal(r"50\%", "0.5") and math_equal("0.5", r"50\%")
    assert math_equal(r"50\%", "50") and math_equal("50", r"50\%")
    assert not math_equal(r"50\%", "5")


def test_math_equal_rounds_floats_to_six_places():
    # Also Math-Verify's choice (float_rounding=6): 0.333333 equals 1/3, 0.33 does not.
    assert math_equal("0.333333", r"\frac{1}{3}")


def test_math_equal_missing_answers_are_false_and_bad_budget_is_a_config_error():
    assert not math_equal(None, "1") and not math_equal("", "1") and not math_equal("1", "  ")
    with pytest.raises(ConfigError):
        math_equal("1", "1", timeout_s=0)


def _timed_in_thread(pred: str, gold: str) -> tuple[bool | None, float]:
    outcome: dict = {}

    def run():
        start = time.monotonic()
        outcome["verdict"] = math_equal(pred, gold, timeout_s=BUDGET_S)
        outcome["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30 * BUDGET_S)
    assert not thread.is_alive(), "math_equal did not return"
    return outcome.get("verdict"), outcome.get("elapsed", float("inf"))


@pytest.mark.parametrize("pred", [TOWER, NESTED], ids=["power-tower", "frac-nested-500"])
def test_pathological_latex_from_a_thread_is_false_within_budget(pred):
    _warm_every_worker()
    verdict, elapsed = _timed_in_thread(pred, "1")
    assert verdict is False
    assert elapsed < 3 * BUDGET_S


def test_timed_out_worker_is_killed_and_the_pool_recovers():
    # A worker stuck where its own CPU budget cannot interrupt it (here: stopped) is killed at the wall
    # clock. (A check that merely runs long ends on the worker's CPU budget, without a kill.)
    pool = WorkerPool(size=1, start_timeout_s=60, memory_bytes=0)
    pool.warm()
    stuck = pool._idle[0].proc.pid
    os.kill(stuck, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert pool.equal("$1$", "$1$", timeout_s=BUDGET_S) is False
        assert time.monotonic() - started < 3 * BUDGET_S
        assert stuck not in {worker.proc.pid for worker in pool._all}  # exactly the stuck worker was replaced ...
        with pytest.raises(ProcessLookupError):
            os.kill(stuck, 0)  # ... and it is dead and reaped, not left computing
        assert pool.equal(r"$\frac{1}{2}$", "$0.5$", timeout_s=10)
        assert len(pool._all) <= 1
    finally:
        pool.close()
    assert math_equal(r"\frac{1}{2}", "0.5")


def test_a_worker_that_cannot_start_in_time_is_a_config_error_and_is_killed():
    pool = WorkerPool(size=1, start_timeout_s=0.001, memory_bytes=0)
    with pytest.raises(ConfigError, match="did not start"):
        pool.equal("$1$", "$1$", timeout_s=BUDGET_S)
    assert pool._all == set() and pool._idle == []


def test_math_equal_does_not_touch_sigalrm_in_the_caller():
    handler = signal.getsignal(signal.SIGALRM)
    assert math_equal("x=3", "3")
    assert signal.getsignal(signal.SIGALRM) is handler
    assert signal.alarm(0) == 0  # no alarm left pending


def test_concurrent_threads_get_their_own_verdicts():
    pairs = [(str(i), str(i if i % 2 else i + 1)) for i in range(8)]
    verdicts: dict[int, bool] = {}
    threads = [
        threading.Thread(target=lambda i=i, p=p: verdicts.__setitem__(i, math_equal(*p)))
        for i, p in enumerate(pairs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert verdicts == {i: bool(i % 2) for i in range(8)}


def test_math_equal_from_asyncio_via_to_thread_and_directly():
    async def main():
        gathered = await asyncio.gather(
            asyncio.to_thread(math_equal, r"\frac{1}{2}", "0.5"),
            asyncio.to_thread(math_equal, "2", "3"),
        )
        return gathered, math_equal("x=3", "3")  # blocking, but correct, inside a running loop

    assert asyncio.run(main()) == ([True, False], True)


def test_math_equal_matches_math500_solutions_to_their_answers(data_dir):
    rows = [json.loads(line) for line in (data_dir / "math500" / "test.jsonl").read_text().splitlines()[:21]]
    assert all(math_equal(row["solution"], row["answer"]) for row in rows)
    shifted = [(a, b) for a, b in zip(rows, rows[1:]) if not math_equal(a["answer"], b["answer"])]
    assert len(shifted) >= 15
    assert not any(math_equal(a["solution"], b["answer"]) for a, b in shifted)
