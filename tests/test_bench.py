"""Offline behaviour of the bench (reasonflow.bench), driven by ScriptedLM and small fake programs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from collections import Counter

import dspy
import pytest

from reasonflow import registry
from reasonflow.bench import main, pass_at_k, program_names, register_cli, run_bench, runner, wilson_interval
from reasonflow.bench.engine_metrics import hit_rate, metrics_url, parse_metrics
from reasonflow.errors import ConfigError, LMTimeoutError
from reasonflow.testing import ScriptedLM
from reasonflow.trace import Trace

GOLD = {}  # question text -> gold answer, filled by the `questions` fixture


@pytest.fixture()
def questions(data_dir):
    from reasonflow.data import load

    examples = load("gsm8k", data_dir=data_dir, limit=6)
    GOLD.update({ex.question: ex.answer for ex in examples})
    return examples


def right(call):
    """Answer every question correctly (n copies for SC)."""
    return {"reasoning": "worked it out", "answer": float(GOLD[call.inputs["question"]])}


def bench(tmp_path, data_dir, script, programs="cot", limit=4, **kw):
    kw.setdefault("out_dir", tmp_path / "out")
    return run_bench(programs, "gsm8k", limit=limit, data_dir=data_dir, lm=ScriptedLM(script),
                     concurrency=kw.pop("concurrency", 4), progress=False, **kw)


def rows_of(out):
    return [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]


# --- statistics -----------------------------------------------------------------------------------

@pytest.mark.parametrize("successes, trials, lo, hi", [
    (5, 10, 0.2366, 0.7634), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (37, 50, 0.6045, 0.8413),
])
def test_wilson_interval_matches_published_values(successes, trials, lo, hi):
    got = wilson_interval(successes, trials)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_interval_without_trials_is_uninformative_and_rejects_impossible_counts():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for bad in ((3, 2), (-1, 5), (0, -1)):
        with pytest.raises(ConfigError):
            wilson_interval(*bad)


def test_pass_at_k_is_the_unbiased_estimator_and_k_equal_n_means_any_sample():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(8, 1, 8) == 1.0 and pass_at_k(8, 0, 8) == 0.0
    with pytest.raises(ConfigError):
        pass_at_k(4, 5, 1)


# --- names and engine metrics ---------------------------------------------------------------------

@pytest.mark.parametrize("dataset, prefix", [
    ("gsm8k", "gsm8k"), ("svamp", "gsm8k"), ("multiarith", "gsm8k"), ("mgsm_ru", "gsm8k"), ("mgsm_en", "gsm8k"),
    ("math500", "math"), ("aime24", "math"), ("game24", "game24"),
])
def test_short_program_names_get_the_dataset_task_prefix(dataset, prefix):
    assert program_names("cot, sc@4,cot", dataset) == [f"{prefix}.cot", f"{prefix}.sc@4"]
    full = ["math.tot@2", "compiled/gsm8k_cot.json"]  # dotted names and artifacts pass through
    assert program_names(full, dataset) == full


def test_program_names_reject_unknown_datasets_and_empty_lists():
    with pytest.raises(ConfigError):
        program_names("cot", "nope")
    with pytest.raises(ConfigError):
        program_names(" , ", "gsm8k")


def test_unknown_program_fails_before_any_lm_call(tmp_path, data_dir):
    lm = ScriptedLM(right)
    with pytest.raises(ConfigError, match="unknown program"):
        run_bench("cot,nosuch", "gsm8k", limit=2, data_dir=data_dir, lm=lm, out_dir=tmp_path, progress=False)
    assert lm.calls == []


def test_prefix_cache_hit_rate_is_the_delta_of_vllm_counters():
    before = parse_metrics('# HELP vllm:prefix_cache_hits_total x\n# TYPE vllm:prefix_cache_hits_total counter\n'
                           'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 100.0\n'
                           'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 400.0\n'
                           'vllm:prefix_cache_queries_created{engine="0"} 1.7e9\n')
    after = parse_metrics('vllm:prefix_cache_hits_total{engine="0",model_name="m"} 160.0\n'
                          'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 480 1712345678\n')
    assert before["vllm:prefix_cache_hits_total"] == 100.0
    assert hit_rate(before, after) == pytest.approx(60 / 80)
    assert hit_rate(before, before) is None and hit_rate(None, after) is None and hit_rate({}, {}) is None
    assert metrics_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/metrics"


# --- runs -------------------------------------------------------------------------------------------

def test_a_run_writes_every_output_and_they_agree(tmp_path, data_dir, questions):
    result = bench(tmp_path, data_dir, right, programs="cot,sc@3", limit=4, html_traces=2)
    out = tmp_path / "out"
    for name in ("questions.jsonl", "results.json", "results.md", "accuracy_vs_tokens.png"):
        assert (out / name).is_file(), name
    assert (out / "accuracy_vs_tokens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = rows_of(out)
    assert Counter(r["program"] for r in rows) == {"gsm8k.cot": 4, "gsm8k.sc@3": 4}
    assert all(r["correct"] and r["error"] is None for r in rows)
    for r in rows:
        trace = Trace.load(out / r["trace"])
        assert trace.graph.graph["question"] == r["question"]
    assert len(list(out.glob("traces/*/*.html"))) == 2 * 2
    saved = json.loads((out / "results.json").read_text())
    by_name = {r["program"]: r for r in saved["results"]}
    cot, sc = by_name["gsm8k.cot"], by_name["gsm8k.sc@3"]
    assert cot["questions"] == 4 and cot["accuracy"] == 1.0 and cot["ci95"] == pytest.approx([0.5101, 1.0], abs=1e-4)
    assert cot["completion_tokens"] == sum(r["completion_tokens"] for r in rows if r["program"] == "gsm8k.cot")
    assert cot["maj@k"] is None and sc["k"] == 3 and sc["pass@k"] == 1.0
    assert saved["peak"] is None and cot["utilisation"] is None and cot["prefix_cache_hit_rate"] is None
    assert result["table"] in (out / "results.md").read_text()
    assert "gsm8k.sc@3" in result["table"] and "100.0% [51.0, 100.0]" in result["table"]


def test_pass_at_k_counts_any_correct_sample_while_maj_at_k_follows_the_vote(tmp_path, data_dir, questions):
    def script(call):  # the wrong answer wins the vote 2:1, the right one is among the samples
        gold = float(GOLD[call.inputs["question"]])
        return [{"reasoning": "r", "answer": a} for a in (gold + 1, gold + 1, gold)]

    result = bench(tmp_path, data_dir, script, programs="sc@3", limit=3)
    sc = result["results"][0]
    assert (sc["accuracy"], sc["maj@k"], sc["pass@k"]) == (0.0, 0.0, 1.0)
    assert sc["pass@1"] == pytest.approx(1 / 3)
    assert all(r["samples_correct"] == 1 for r in rows_of(tmp_path / "out"))


def test_game24_is_checked_against_the_puzzle_not_the_number_24(tmp_path, data_dir):
    lm = ScriptedLM(lambda call: {"reasoning": "r", "answer": "4 * 6 * 1 * 1"})
    result = run_bench("cot", "game24", limit=2, data_dir=data_dir, lm=lm, out_dir=tmp_path, progress=False)
    rows = rows_of(tmp_path)
    assert [r["correct"] for r in rows if r["index"] == 0] == [True]  # puzzle "1 1 4 6"
    assert [r["correct"] for r in rows if r["index"] == 1] == [False]  # puzzle "1 1 11 11"
    assert result["results"][0]["correct"] == 1


def test_each_error_type_is_tallied_and_the_run_goes_on(tmp_path, data_dir, questions):
    order = [ex.question for ex in questions]

    def script(call):
        i = order.index(call.inputs["question"])
        if i == 0:
            return "this is not JSON"
        if i == 1:
            return {"reasoning": "r" * 50, "answer": 1}, "length"
        if i == 2:
            raise LMTimeoutError("server stalled")
        return right(call)

    result = bench(tmp_path, data_dir, script, limit=5)
    cot = result["results"][0]
    assert cot["errors"] == {"ParseError": 1, "TruncatedError": 1, "LMTimeoutError": 1}
    assert cot["questions"] == 5 and cot["correct"] == 2
    rows = {r["index"]: r for r in rows_of(tmp_path / "out")}
    assert rows[0]["error"] == "ParseError" and "not JSON" in rows[0]["error_message"]
    assert rows[2]["error"] == "LMTimeoutError"
    failed = Trace.load(tmp_path / "out" / rows[2]["trace"])  # the program left no trace: the bench writes one
    assert "server stalled" in " ".join(d["text"] for _, d in failed.graph.nodes(data=True))
    assert not any(rows[i]["correct"] for i in (0, 1, 2))
    assert "LMTimeoutError 1" in result["table"]


class Flaky(dspy.Module):
    """A program that hangs, answers nothing, crashes or answers, by question."""

    def __init__(self, order):
        super().__init__()
        self.order = order

    async def aforward(self, question):
        i = self.order.index(question)
        if i == 0:
            await asyncio.sleep(30)
        if i == 1:
            return dspy.Prediction(answer=None, reasoning="", budget_exhausted=True)
        if i == 2:
            return dspy.Prediction(answer="  ", reasoning="")
        if i == 3:
            raise RuntimeError("bug in a user program")
        return dspy.Prediction(answer=GOLD[question], reasoning="ok")


def test_timeouts_missing_answers_and_crashes_are_failures_not_aborts(tmp_path, data_dir, questions, monkeypatch):
    registry.list_programs()  # load the real programs before adding a fake one
    order = [ex.question for ex in questions]
    monkeypatch.setitem(registry.PROGRAMS, "gsm8k.flaky",
                        registry.ProgramSpec("gsm8k.flaky", "number", "flaky", lambda: Flaky(order)))
    result = bench(tmp_path, data_dir, right, programs="flaky", limit=5, question_timeout_s=0.5)
    assert result["results"][0]["errors"] == {"QuestionTimeout": 1, "budget_exhausted": 1, "no_answer": 1,
                                              "RuntimeError": 1}
    assert result["results"][0]["correct"] == 1


def test_resume_runs_only_the_questions_not_yet_on_disk(tmp_path, data_dir, questions):
    bench(tmp_path, data_dir, right, programs="cot,sc@2", limit=2)
    lm = ScriptedLM(right)
    result = run_bench("cot,sc@2", "gsm8k", limit=4, data_dir=data_dir, lm=lm, out_dir=tmp_path / "out",
                       resume=True, progress=False)
    asked = Counter(c.inputs["question"] for c in lm.calls)
    assert asked == {ex.question: 2 for ex in questions[2:4]}  # the 2 new questions, once per program
    rows = rows_of(tmp_path / "out")
    assert len(rows) == 8 and len({(r["program"], r["id"]) for r in rows}) == 8
    assert all(r["questions"] == 4 and r["session_questions"] == 2 for r in result["results"])


def test_an_interrupted_run_keeps_finished_questions_and_resume_completes_it(tmp_path, data_dir, questions,
                                                                            monkeypatch):
    # Question 0 is still being scored (its HTML trace written, say) when Ctrl-C lands on question 2:
    # its row must survive the cancellation all the same.
    finish = runner.finish

    def slow_first(name, program, index, *rest):
        if index == 0:
            time.sleep(1.0)
        return finish(name, program, index, *rest)

    monkeypatch.setattr(runner, "finish", slow_first)
    # A process started in the background by a non-interactive shell inherits SIGINT as ignored, and
    # Python then installs no KeyboardInterrupt handler: put Python's own back for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_then_resume(tmp_path, data_dir, questions)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_then_resume(tmp_path, data_dir, questions):
    order = [ex.question for ex in questions]
    asked = Counter()

    def interrupt_on_third(call):
        asked[call.inputs["question"]] += 1
        if order.index(call.inputs["question"]) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while this question is in flight
        return right(call)

    with pytest.raises(KeyboardInterrupt):
        bench(tmp_path, data_dir, interrupt_on_third, limit=4, concurrency=1)
    assert sorted(r["index"] for r in rows_of(tmp_path / "out")) == [0, 1]  # in the order they finished

    def count(call):
        asked[call.inputs["question"]] += 1
        return right(call)

    bench(tmp_path, data_dir, count, limit=4, resume=True)
    assert [asked[q] for q in order[:4]] == [1, 1, 2, 1]  # only the interrupted one was asked again
    assert sorted(r["index"] for r in rows_of(tmp_path / "out")) == [0, 1, 2, 3]


def test_a_row_cut_off_by_a_crash_is_dropped_and_run_again(tmp_path, data_dir, questions):
    bench(tmp_path, data_dir, right, limit=3)
    path = tmp_path / "out" / "questions.jsonl"
    text = path.read_text()
    path.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 1] + text.splitlines()[-1][:40])
    lm = ScriptedLM(right)
    run_bench("cot", "gsm8k", limit=3, data_dir=data_dir, lm=lm, out_dir=tmp_path / "out", resume=True,
              progress=False)
    assert len(lm.calls) == 1
    assert len(rows_of(tmp_path / "out")) == 3


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path, data_dir, questions):
    bench(tmp_path, data_dir, right, limit=1)
    with pytest.raises(ConfigError, match="--resume"):
        bench(tmp_path, data_dir, right, limit=1)


def test_bad_bounds_are_config_errors(tmp_path, data_dir):
    for kw in ({"concurrency": 0}, {"question_timeout_s": 0}, {"html_traces": -1}):
        with pytest.raises(ConfigError):
            bench(tmp_path, data_dir, right, limit=1, **kw)


# --- command line -----------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:coroutine .*try_connect.* was never awaited:RuntimeWarning")  # anyio
def test_cli_prints_the_table_and_survives_an_endpoint_without_metrics(tmp_path, data_dir, questions, monkeypatch,
                                                                      capsys):
    lm = ScriptedLM(right)
    lm.base_url, lm.served_model = "http://127.0.0.1:9/v1", "scripted"  # nothing listens: no metrics, no peak
    monkeypatch.setattr("reasonflow.lm.connect", lambda base_url=None, model=None, **kw: lm)
    code = main(["--dataset", "gsm8k", "--limit", "2", "--programs", "cot", "--out", str(tmp_path / "cli"),
                 "--data-dir", str(data_dir), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0 and "| gsm8k.cot | gsm8k | 2 |" in printed
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert saved["peak"] is None and saved["results"][0]["prefix_cache_hit_rate"] is None
    assert main(["--dataset", "gsm8k", "--programs", "cot", "--out", str(tmp_path / "cli"),
                 "--data-dir", str(data_dir)]) == 2  # exists, no --resume: one-line error, exit 2
    assert "error:" in capsys.readouterr().err


def test_register_cli_adds_a_bench_subcommand_with_the_same_arguments():
    parser = argparse.ArgumentParser(prog="reasonflow")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--dataset", "math500", "--programs", "cot,sc@4", "--resume"])
    assert args.dataset == "math500" and args.resume and callable(args.func)


def test_latex_answers_are_checked_with_math_verify_off_the_event_loop(tmp_path, data_dir):
    from reasonflow.data import load

    (first,) = load("math500", data_dir=data_dir, limit=1)
    answers = iter([f"\\boxed{{{first.answer}}}", "\\boxed{17}"])
    lm = ScriptedLM(lambda call: {"reasoning": "r", "answer": next(answers)})
    result = run_bench("cot", "math500", data_dir=data_dir, limit=1, lm=lm, out_dir=tmp_path / "a", progress=False)
    assert result["results"][0]["correct"] == 1
    result = run_bench("cot", "math500", data_dir=data_dir, limit=1, lm=lm, out_dir=tmp_path / "b", progress=False)
    assert result["results"][0]["correct"] == 0
