"""Export a bench run in lm-evaluation-harness's results layout, for people who keep their tables there.

    reasonflow bench --dataset gsm8k --programs cot,sc@4 --out runs/x --lm-eval-out runs/lm-eval
    # -> runs/lm-eval/<model, sanitized>/results_<date>.json  (a path ending in .json is written as is)

``to_lm_eval(results)`` maps results.json onto lm-eval's aggregated file: one task per program,
named ``<dataset>_<program>`` (``gsm8k_gsm8k.sc@4``), with ``exact_match,none`` and
``exact_match_stderr,none`` (the sample standard error lm-eval reports for a mean), and for sampling
programs ``pass@k,none``/``maj@k,none``; plus ``configs``, ``versions``, ``n-shot``,
``higher_is_better``, ``n-samples``, ``config`` (model, model_args, limit, seed), ``git_hash``,
``date`` (a Unix time, as lm-eval writes it), ``model_name``/``model_name_sanitized`` and the
``model_source`` "reasonflow". Reasonflow's own figures (tokens, LM calls, settings) ride along under
each task's config as ``metadata``.

Not guaranteed: this is the layout of the file, not lm-eval's task semantics: the prompts, answer
extraction and scoring are reasonflow's (Math-Verify), so a number here is not an lm-eval gsm8k score.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path

VERSION = 1  # the task "version" reported for every reasonflow program


def sanitize_model_name(name: str) -> str:
    """lm-eval's directory name for a model (path-like characters become ``__``)."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def _stderr(p: float | None, n: int) -> float | None:
    if p is None or n < 2:
        return None
    return math.sqrt(p * (1 - p) / (n - 1))


def to_lm_eval(results: dict) -> dict:
    """lm-eval's aggregated results dict for a results.json dict (see the module docstring)."""
    prov = results.get("provenance") or {}
    model = (prov.get("model") or {}).get("name") or results.get("model") or "unknown"
    dataset = results["dataset"]
    tasks, configs, versions, nshot, better, nsamples = {}, {}, {}, {}, {}, {}
    for entry in results["results"]:
        task = f"{dataset}_{entry['program']}"
        n = entry["questions"]
        metrics = {"alias": task, "exact_match,none": entry["accuracy"],
                   "exact_match_stderr,none": _stderr(entry["accuracy"], n)}
        higher = {"exact_match": True}
        if entry.get("k"):
            for key in ("pass@k", "maj@k"):
                metrics[f"{key},none"] = entry.get(key)
                metrics[f"{key}_stderr,none"] = _stderr(entry.get(key), n)
                higher[key] = True
        tasks[task] = metrics
        settings = ((prov.get("programs") or {}).get(entry["program"]) or {})
        configs[task] = {
            "task": task, "dataset_path": (prov.get("dataset") or {}).get("id") or dataset,
            "dataset_name": (prov.get("dataset") or {}).get("config"), "test_split": results.get("split"),
            "output_type": "generate_until", "num_fewshot": 0,
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in higher],
            "metadata": {"version": VERSION, "reasonflow_program": entry["program"],
                         "settings": settings.get("settings"), "dataset": prov.get("dataset"),
                         "tokens_per_question": entry.get("tokens_per_question"),
                         "lm_calls": entry.get("lm_calls"), "ci95": entry.get("ci95"),
                         "errors": entry.get("errors")},
        }
        versions[task], nshot[task], better[task] = VERSION, 0, higher
        nsamples[task] = {"original": n, "effective": n}
    git = prov.get("git") or {}
    date = prov.get("date")
    vers = prov.get("versions") or {}
    return {
        "results": tasks, "group_subtasks": {task: [] for task in tasks}, "configs": configs,
        "versions": versions, "n-shot": nshot, "higher_is_better": better, "n-samples": nsamples,
        "config": {"model": "reasonflow", "model_args": f"model={model},base_url={results.get('base_url')}",
                   "batch_size": results.get("concurrency"), "limit": results.get("limit"),
                   "random_seed": results.get("seed"), "bootstrap_iters": 0, "gen_kwargs": None},
        "git_hash": (git.get("commit") or "")[:7] or None,
        "date": datetime.fromisoformat(date).timestamp() if date else None,
        "transformers_version": vers.get("transformers"), "lm_eval_version": None,
        "reasonflow_version": vers.get("reasonflow"), "command": prov.get("command"),
        "model_source": "reasonflow", "model_name": model, "model_name_sanitized": sanitize_model_name(model),
        "system_instruction": None, "chat_template": None, "fewshot_as_multiturn": False,
        "start_time": prov.get("started_at"), "end_time": prov.get("finished_at"),
        "task_hashes": {},
    }


def write(results: dict, out: str | Path) -> Path:
    """Write ``to_lm_eval(results)``: to ``out`` when it ends in .json, else, as lm-eval does, to
    ``out/<model_name_sanitized>/results_<date>.json``."""
    payload = to_lm_eval(results)
    out = Path(out)
    if out.suffix == ".json":
        path = out
    else:
        stamp = (results.get("provenance") or {}).get("date") or datetime.now().isoformat(timespec="seconds")
        path = out / payload["model_name_sanitized"] / f"results_{stamp.replace(':', '-')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return path
