"""Turn bench rows into results: per-program figures, the markdown table, and the accuracy/tokens plot.

``summarise(name, dataset, rows, session, peak)`` gives one results.json entry: accuracy with its 95%
Wilson interval, errors by type, maj@k / pass@k / pass@1 for sampling programs (rows with ``k``),
accuracy per selection rule where a program reports several (``selections``: PoT@k's majority and
logprob-weighted votes over the same samples), token and call totals over all rows, and this
session's wall time, tok/s, utilisation and prefix-cache hit rate. ``table(results)`` renders them
as markdown (``selections(results)`` adds a line per program with several selection rules);
``plot(results, dataset, path)`` draws one point per program (tokens per question against accuracy,
with interval bars) using matplotlib's Agg canvas. ``write(out, results, heading)`` writes a run's
results.json, results.md and plot.

Not guaranteed: maj@k and pass@k need per-sample answers (``Result.samples``); programs without them
report null. pass@k counts a question as solved when any of its samples is correct.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from reasonflow.bench.stats import mean, pass_at_k, wilson_interval


def _rate(successes: int, trials: int) -> dict:
    lo, hi = wilson_interval(successes, trials)
    return {"value": successes / trials if trials else None, "ci95": [round(lo, 4), round(hi, 4)]}


def summarise(name: str, dataset: str, rows: list[dict], session, peak) -> dict:
    n = len(rows)
    correct = sum(bool(r["correct"]) for r in rows)
    accuracy = _rate(correct, n)
    totals = {key: sum(r.get(key) or 0 for r in rows)
              for key in ("prompt_tokens", "completion_tokens", "cached_tokens", "lm_calls")}
    result = {
        "program": name, "dataset": dataset, "questions": n, "correct": correct,
        "accuracy": accuracy["value"], "ci95": accuracy["ci95"],
        "errors": dict(Counter(r["error"] for r in rows if r.get("error")).most_common()),
        "k": None, "maj@k": None, "maj@k_ci95": None, "pass@k": None, "pass@k_ci95": None, "pass@1": None,
        **totals,
        "tokens_per_question": (totals["prompt_tokens"] + totals["completion_tokens"]) / n if n else None,
        "tokens_per_solved": (totals["prompt_tokens"] + totals["completion_tokens"]) / correct if correct else None,
        "lm_calls_per_solved": totals["lm_calls"] / correct if correct else None,
        "mean_latency_s": mean([r.get("latency_s") or 0.0 for r in rows]),
    }
    sampled = [r for r in rows if r.get("k")]
    if sampled:
        k = max(r["k"] for r in sampled)
        solved = sum((r.get("samples_correct") or 0) > 0 for r in sampled)
        passk = _rate(solved, len(sampled))
        result.update({"k": k, "maj@k": accuracy["value"], "maj@k_ci95": accuracy["ci95"],
                       "pass@k": passk["value"], "pass@k_ci95": passk["ci95"],
                       "pass@1": mean([pass_at_k(r["k"], min(r.get("samples_correct") or 0, r["k"]), 1)
                                       for r in sampled])})
    rules = sorted({rule for r in rows for rule in (r.get("selections_correct") or {})})
    if rules:  # each selection rule over the same samples, scored over every question (errors count as wrong)
        result["selections"] = {}
        for rule in rules:
            hits = sum(bool((r.get("selections_correct") or {}).get(rule)) for r in rows)
            result["selections"][rule] = {"correct": hits, **_rate(hits, n)}
    fresh = session.rows if session else []
    wall = session.wall_s if session and fresh else None
    new_completion = sum(r.get("completion_tokens") or 0 for r in fresh)
    new_total = new_completion + sum(r.get("prompt_tokens") or 0 for r in fresh)
    tok_s = new_completion / wall if wall else None
    result.update({
        "session_questions": len(fresh), "wall_s": round(wall, 3) if wall else None,
        "completion_tok_s": round(tok_s, 2) if tok_s is not None else None,
        "total_tok_s": round(new_total / wall, 2) if wall else None,
        "utilisation": round(tok_s / peak.tok_s, 4) if tok_s is not None and peak and peak.tok_s else None,
        "prefix_cache_hit_rate": session.prefix_cache_hit_rate if session else None,
        "cached_token_share": totals["cached_tokens"] / totals["prompt_tokens"] if totals["prompt_tokens"] else None,
    })
    return result


def _pct(value, ci=None) -> str:
    if value is None:
        return "-"
    text = f"{100 * value:.1f}%"
    return f"{text} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else text


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


LOG_X_SPREAD = 20  # plot tokens on a log axis when the largest is this many times the smallest
COLUMNS = ["program", "dataset", "n", "accuracy [95% CI]", "maj@k", "pass@k", "errors", "tokens/q",
           "LM calls", "tokens/solved", "calls/solved", "wall s", "tok/s", "util", "cache hit"]


def table(results: list[dict]) -> str:
    """The results as a markdown table (the one printed at the end of a run)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for r in results:
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "-"
        k = f"@{r['k']}" if r["k"] else ""
        cells = [r["program"], r["dataset"], str(r["questions"]), _pct(r["accuracy"], r["ci95"]),
                 _pct(r["maj@k"]) + k if r["maj@k"] is not None else "-",
                 _pct(r["pass@k"]) + k if r["pass@k"] is not None else "-", errors,
                 _num(r["tokens_per_question"], ".0f"), str(r["lm_calls"]), _num(r.get("tokens_per_solved"), ".0f"),
                 _num(r.get("lm_calls_per_solved"), ".1f"), _num(r["wall_s"], ".1f"),
                 _num(r["completion_tok_s"], ".1f"), _pct(r["utilisation"]), _pct(r["prefix_cache_hit_rate"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def baselines(results: list[dict]) -> str:
    """One line per model-guided tree search that ran beside its baselines (``NAME:random``,
    ``NAME:exact``): how much of the accuracy is the search and how much the model."""
    by_name = {r["program"]: r for r in results}
    lines = []
    for r in results:
        if ":" in r["program"] or not r["questions"]:
            continue
        random_, exact = by_name.get(r["program"] + ":random"), by_name.get(r["program"] + ":exact")
        if not random_ and not exact:
            continue
        parts = [f"**{r['program']}** {_pct(r['accuracy'], r['ci95'])}"]
        if random_:
            ratio = f"model x{r['accuracy'] / random_['accuracy']:.1f}" if random_["accuracy"] else "random solved none"
            parts.append(f"random policy (same search, no LM) {_pct(random_['accuracy'], random_['ci95'])}: {ratio}")
        if exact:
            parts.append(f"exact policy (a perfect model) {_pct(exact['accuracy'], exact['ci95'])}")
        lines.append("What the model adds: " + "; ".join(parts))
    return "\n".join(lines)


def selections(results: list[dict]) -> str:
    """One line per program that reports several selection rules over the same samples."""
    lines = []
    for r in results:
        if r.get("selections"):
            rules = "; ".join(f"{rule} {_pct(v['value'], v['ci95'])}" for rule, v in r["selections"].items())
            lines.append(f"Selection over the same samples, **{r['program']}**: {rules}")
    return "\n".join(lines)


def write(out: Path, results: dict, heading: str) -> str:
    """``out``/results.json, results.md (``# heading``, the table, its baseline and selection lines) and
    accuracy_vs_tokens.png for one run's ``results``; returns the markdown table."""
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = table(results["results"])
    for extra in (baselines(results["results"]), selections(results["results"])):
        markdown += f"\n\n{extra}" if extra else ""
    (out / "results.md").write_text(f"# {heading}\n\n{markdown}\n")
    plot(results["results"], results["dataset"], out / "accuracy_vs_tokens.png")
    return markdown


def plot(results: list[dict], dataset: str, path: Path) -> Path:
    """accuracy_vs_tokens.png: one point per program with its 95% interval as bars."""
    from matplotlib.figure import Figure  # the Agg canvas; no pyplot, no global backend state

    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    for r in results:
        if not r["questions"]:
            continue
        x, y, (lo, hi) = r["tokens_per_question"], r["accuracy"], r["ci95"]
        ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], fmt="o", capsize=4, label=r["program"])
        ax.annotate(r["program"], (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    xs = [r["tokens_per_question"] for r in results if r["questions"] and r["tokens_per_question"]]
    if xs and max(xs) > LOG_X_SPREAD * min(xs):  # ToT next to CoT: orders of magnitude apart
        ax.set_xscale("log")
    ax.set_xlabel("tokens per question (prompt + completion)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{dataset}: accuracy vs tokens (bars: 95% Wilson CI)")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return Path(path)
