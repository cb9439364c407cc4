"""Where the number checker and a regex-only checker disagree on GSM8K, counted.

    python evals/checker_agreement.py --data-dir ../shared/data                     # gold solutions only
    python evals/checker_agreement.py --data-dir ../shared/data --questions runs/x/questions.jsonl

Both checkers judge a text against the gold number. The number checker is
``reasonflow.checking.check("number", text, gold)`` (the number after the last "####"/"answer is",
else the last number; commas, "$", fractions and a trailing "." handled). The regex-only checker takes
``checking.regex_only_number(text)`` (the last match of ``-?\\d+\\.?\\d*``) and compares it with the gold
as a float. Sources: the gold worked solutions (they should all be right), and from a bench
``questions.jsonl`` the model's predicted answers and its free-text reasoning. Prints one count line
per source and a few disagreements of each kind.

Not guaranteed: agreement says nothing about whether either checker is right; read the examples.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from reasonflow.checking import check, regex_only_number
from reasonflow.data import data_dir_from_env


def regex_only_check(text, gold) -> bool:
    found = regex_only_number(None if text is None else str(text))
    try:
        return found is not None and float(found) == float(gold)
    except ValueError:
        return False


def compare(pairs: list[tuple[str, str, str]]) -> tuple[Counter, dict[str, list]]:
    """pairs of (label, text, gold) -> counts of both/number_only/regex_only/neither, and examples."""
    counts: Counter = Counter()
    examples: dict[str, list] = {"number_only": [], "regex_only": []}
    for label, text, gold in pairs:
        number, regex = check("number", text, gold), regex_only_check(text, gold)
        kind = "both" if number and regex else "number_only" if number else "regex_only" if regex else "neither"
        counts[kind] += 1
        if kind in examples:
            examples[kind].append((label, text, gold, regex_only_number(None if text is None else str(text))))
    return counts, examples


def gold_pairs(data_dir: Path | None, split: str, limit: int | None) -> list[tuple[str, str, str]]:
    if data_dir is not None:
        rows = [json.loads(line) for line in (data_dir / "gsm8k" / f"{split}.jsonl").read_text().splitlines()]
    else:
        import datasets

        rows = list(datasets.load_dataset("openai/gsm8k", "main", split=split))
    rows = rows[:limit] if limit else rows
    return [(f"gsm8k:{split}:{i}", r["answer"], r["answer"].split("####")[-1].strip().replace(",", ""))
            for i, r in enumerate(rows)]


def prediction_pairs(path: Path) -> dict[str, list[tuple[str, str, str]]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("dataset", "").startswith(("gsm8k", "svamp", "multiarith", "mgsm"))]
    label = lambda r: f"{r['program']} {r['id']}"  # noqa: E731
    return {
        "predicted answers": [(label(r), None if r["prediction"] is None else str(r["prediction"]), r["gold"])
                              for r in rows],
        "reasoning text": [(label(r), r.get("reasoning") or "", r["gold"]) for r in rows],
    }


def report(name: str, counts: Counter, examples: dict[str, list], show: int) -> None:
    total = sum(counts.values())
    disagree = counts["number_only"] + counts["regex_only"]
    print(f"{name:<20} {total:>6} {counts['both']:>10} {counts['neither']:>11} {counts['number_only']:>12} "
          f"{counts['regex_only']:>11} {disagree:>9}")
    for kind, items in examples.items():
        for label, text, gold, regex in items[:show]:
            flat = " ".join(str(text).split())
            print(f"    {kind:<11} {label}: gold {gold}, regex read {regex!r}: ...{flat[-110:]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="local benchmark files (default: REASONFLOW_DATA_DIR, else the hub)")
    parser.add_argument("--split", default="test", choices=["test", "train"])
    parser.add_argument("--limit", type=int, help="gold solutions to read (default: all)")
    parser.add_argument("--questions", type=Path, help="a bench questions.jsonl with the model's predictions")
    parser.add_argument("--show", type=int, default=5, help="disagreements to print per kind and source")
    args = parser.parse_args(argv)
    print(f"{'source':<20} {'rows':>6} {'both right':>10} {'both wrong':>11} {'number only':>12} "
          f"{'regex only':>11} {'disagree':>9}")
    sources = {"gold solutions": gold_pairs(data_dir_from_env(args.data_dir), args.split, args.limit)}
    if args.questions:
        sources.update(prediction_pairs(args.questions))
    for name, pairs in sources.items():
        report(name, *compare(pairs), args.show)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
