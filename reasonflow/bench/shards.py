"""Sharded benches: shard i of N runs a fixed, disjoint slice of the questions; ``merge`` rebuilds one run.

    python evals/math_bench.py --dataset gsm8k --limit 100 --programs cot,sc@4 --shard 0/2 --out runs/s0
    python evals/math_bench.py --dataset gsm8k --limit 100 --programs cot,sc@4 --shard 1/2 --out runs/s1
    reasonflow bench merge runs/all runs/s0 runs/s1      # results.json, results.md, plot, questions.jsonl

``Shard.parse("i/N")`` (0 <= i < N) selects ``questions[i::N]`` of the question list the other options
give (``--seed``, ``--offset``, ``--limit``): the same slice on every machine for the same dataset
file, the N slices disjoint, their union the unsharded set. Rows keep their index in the unsharded
list. A shard's results.json records ``shard``: its index, the count, the unsharded total and its ids.

``merge(out, shard_dirs)`` reads each shard's results.json and questions.jsonl, checks that they are
one run split N ways (same dataset file, split, offset, limit, seed, model, programs and program
settings; shard indices 0..N-1 each once; no question in two shards, none missing, every program's
row present for every question), copies the rows' traces, and writes the outputs of an unsharded run
with ``report.summarise`` (pure over rows). Anything else is a ``ShardMergeError`` naming the shard.

Not guaranteed: session figures assume the shards ran at the same time: ``wall_s`` is the slowest
shard's and tok/s is the shards' sum (the cluster's rate); utilisation, peak and prefix-cache hit
rate are per engine and are left null (each shard's own stays in its results.json). Versions and the
git commit are not compared (each shard's are kept under ``provenance.shards``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from reasonflow.bench import provenance, report
from reasonflow.errors import ConfigError

MAX_SHARDS = 1024
RESULT_FILES = ("questions.jsonl", "results.json", "results.md", "accuracy_vs_tokens.png")


class ShardMergeError(ConfigError):
    """Shard directories that are not one bench run split N ways (or are unreadable); says which."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self):
        for value in (self.index, self.count):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"a shard is two ints, got {self.index!r}/{self.count!r}")
        if not 1 <= self.count <= MAX_SHARDS or not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index}/{self.count}: need 0 <= i < N <= {MAX_SHARDS} (MAX_SHARDS)")

    @classmethod
    def parse(cls, text: "str | Shard | None") -> "Shard | None":
        """``"i/N"`` (or a Shard, or None) as a Shard."""
        if text is None or isinstance(text, Shard):
            return text
        index, sep, count = str(text).partition("/")
        try:
            if not sep:
                raise ValueError(text)
            index, count = int(index), int(count)
        except ValueError:
            raise ConfigError(f"--shard takes i/N (shard i of N, 0-based), e.g. 0/4; got {text!r}") from None
        return cls(index, count)

    def select(self, items: list) -> list:
        """This shard's items: every N-th, starting at the i-th (round robin keeps shards alike)."""
        return list(items)[self.index::self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _fingerprint(results: dict) -> dict:
    """What must agree between shards of one run (paths dropped: machines differ, contents must not)."""
    prov = results.get("provenance") or {}
    programs = {}
    for name, info in (prov.get("programs") or {}).items():
        artifact = {k: v for k, v in (info.get("artifact") or {}).items() if k != "path"}
        programs[name] = {**info, "artifact": artifact or None}
    return {
        "dataset": results.get("dataset"), "split": results.get("split"), "offset": results.get("offset"),
        "limit": results.get("limit"), "seed": results.get("seed"),
        "unsharded questions": (results.get("shard") or {}).get("total"),
        "shard count": (results.get("shard") or {}).get("count"),
        "model": results.get("model"), "model root": (prov.get("model") or {}).get("root"),
        "dataset file": {k: v for k, v in (prov.get("dataset") or {}).items() if k != "path"},
        "programs": [r.get("program") for r in results.get("results") or []],
        "program settings": programs,
    }


def _read_shard(path: Path) -> tuple[dict, dict[tuple[str, str], dict]]:
    if not path.is_dir():
        raise ShardMergeError(f"{path} is not a directory (pass the shards' --out directories)")
    if not (path / "results.json").is_file():
        raise ShardMergeError(f"{path} has no results.json: that shard did not finish; rerun it with --resume")
    try:
        results = json.loads((path / "results.json").read_text(encoding="utf-8"))
        lines = (path / "questions.jsonl").read_text(encoding="utf-8").splitlines()
        rows = {}
        for line in lines:
            row = json.loads(line)
            rows[(row["program"], row["id"])] = row
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ShardMergeError(f"cannot read the bench files in {path}: {exc}") from exc
    if not isinstance(results, dict) or not isinstance(results.get("shard"), dict):
        raise ShardMergeError(f"{path}/results.json is not a shard's (run with --shard i/N)")
    shard = results["shard"]
    if not (all(isinstance(shard.get(k), int) for k in ("index", "count", "total"))
            and isinstance(shard.get("ids"), list) and isinstance(results.get("results"), list)):
        raise ShardMergeError(f"{path}/results.json has a malformed shard record: {shard!r}")
    ids = set(shard["ids"])  # rows outside the shard's own questions (an older run in the directory) stay out
    return results, {key: row for key, row in rows.items() if key[1] in ids}


def _check(shards: list[tuple[Path, dict, dict]]) -> list[str]:
    """Raise ShardMergeError unless the shards are one run split N ways; return the ids in order."""
    first_path, first, _ = shards[0]
    expected = _fingerprint(first)
    for path, results, _ in shards[1:]:
        got = _fingerprint(results)
        differ = [key for key in expected if expected[key] != got[key]]
        if differ:
            key = differ[0]
            raise ShardMergeError(f"{path} is not a shard of the same run as {first_path}: {', '.join(differ)} "
                                  f"differ ({key}: {got[key]!r} vs {expected[key]!r})")
    count, total = first["shard"].get("count"), first["shard"].get("total")
    indices = sorted(r["shard"].get("index") for _, r, _ in shards)
    if indices != list(range(count)):
        missing = sorted(set(range(count)) - set(indices))
        twice = sorted({i for i in indices if indices.count(i) > 1})
        raise ShardMergeError(f"need shards 0..{count - 1} once each; missing {missing}, given twice {twice}")
    owner: dict[str, Path] = {}
    for path, results, rows in shards:
        ids = results["shard"].get("ids") or []
        for qid in ids:
            if qid in owner:
                raise ShardMergeError(f"question {qid!r} is in both {owner[qid]} and {path}")
            owner[qid] = path
        for program in _fingerprint(results)["programs"]:
            lacking = [qid for qid in ids if (program, qid) not in rows]
            if lacking:
                raise ShardMergeError(f"{path} has no {program} row for {len(lacking)} of its questions "
                                      f"(first {lacking[0]!r}); rerun that shard with --resume")
    if len(owner) != total:
        raise ShardMergeError(f"the shards hold {len(owner)} questions, the unsharded run has {total}")
    return list(owner)


def merge(out_dir, shard_dirs, *, command=None) -> dict:
    """Merge the shards' outputs into ``out_dir`` as one unsharded run; returns results.json's content
    (with ``table``)."""
    out, paths = Path(out_dir), [Path(p) for p in shard_dirs]
    if not paths:
        raise ShardMergeError("no shard directories given: reasonflow bench merge OUT SHARD_DIR...")
    if any(out.resolve() == p.resolve() for p in paths):
        raise ShardMergeError(f"{out} is one of the shards; merge into another directory")
    if out.exists() and any((out / name).exists() for name in RESULT_FILES):
        raise ShardMergeError(f"{out} already holds bench results; choose another output directory")
    shards = [(p, *_read_shard(p)) for p in paths]
    _check(shards)
    shards.sort(key=lambda s: s[1]["shard"]["index"])
    first = shards[0][1]
    rows = {key: row for _, _, shard_rows in shards for key, row in shard_rows.items()}
    names = _fingerprint(first)["programs"]
    out.mkdir(parents=True, exist_ok=True)
    for path, _, shard_rows in shards:
        for row in shard_rows.values():
            _copy_trace(path, out, row.get("trace"))
    ordered = {name: sorted((r for (p, _), r in rows.items() if p == name), key=lambda r: r["index"]) for name in names}
    with (out / "questions.jsonl").open("w", encoding="utf-8") as handle:
        for name in names:
            handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered[name])
    results = {key: first.get(key) for key in ("dataset", "split", "limit", "offset", "seed")}
    results.update({
        "questions": first["shard"]["total"],
        "base_url": ",".join(dict.fromkeys(str(s[1].get("base_url")) for s in shards)),
        "model": first.get("model"), "concurrency": first.get("concurrency"), "peak": None,
        "results": [_summary(name, first["dataset"], ordered[name], [s[1] for s in shards]) for name in names],
        "resumed": any(s[1].get("resumed") for s in shards),
        "shard": None, "merged_from": [{"dir": str(p), "shard": f"{r['shard']['index']}/{r['shard']['count']}",
                                        "questions": len(r["shard"].get("ids") or [])} for p, r, _ in shards],
        "provenance": {**(first.get("provenance") or {}), "command": provenance.command_line(command),
                       "date": provenance.now(), "shards": [_shard_provenance(r) for _, r, _ in shards]},
    })
    table = report.write(out, results, f"{results['dataset']} ({results['split']}, {results['questions']} questions, "
                                       f"merged from {len(shards)} shards)")
    return {**results, "table": table}


def _summary(name: str, dataset: str, rows: list[dict], shard_results: list[dict]) -> dict:
    """summarise over every row; session figures from the shards' own (see the module docstring)."""
    entry = report.summarise(name, dataset, rows, None, None)
    own = [next((r for r in s["results"] if r["program"] == name), {}) for s in shard_results]
    walls = [r.get("wall_s") for r in own if r.get("wall_s")]

    def total(key):
        values = [r.get(key) for r in own if r.get(key) is not None]
        return round(sum(values), 2) if values else None

    entry.update(session_questions=sum(r.get("session_questions") or 0 for r in own),
                 wall_s=max(walls) if walls else None, completion_tok_s=total("completion_tok_s"),
                 total_tok_s=total("total_tok_s"))
    return entry


def _shard_provenance(results: dict) -> dict:
    prov = results.get("provenance") or {}
    return {"shard": f"{results['shard']['index']}/{results['shard']['count']}",
            **{key: prov.get(key) for key in ("command", "started_at", "finished_at", "versions", "git")}}


def _copy_trace(shard: Path, out: Path, rel: str | None) -> None:
    if not rel:
        return
    source = (shard / rel).resolve()
    if not source.is_relative_to(shard.resolve()):  # a row names a path outside its shard: not copied
        raise ShardMergeError(f"{shard}: a row's trace path {rel!r} leaves the shard directory")
    for path in (source, source.with_suffix(".html")):
        if path.is_file():
            target = out / path.relative_to(shard.resolve())
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
