"""Dataset registry: load a math benchmark as ``dspy.Example(question=..., answer=...)``.

By default a dataset loads with ``datasets.load_dataset`` from its hub id (table below). With a
local directory (``data_dir=`` or ``REASONFLOW_DATA_DIR``) it reads the files in the layout below,
still through ``datasets`` (its json/csv builders), so no network is needed.

| name        | hub id (config)                 | local file                 | question from        | gold answer  |
| ----------- | ------------------------------- | -------------------------- | -------------------- | ------------ |
| gsm8k       | openai/gsm8k (main)             | gsm8k/{split}.jsonl        | question             | after ####   |
| math500     | HuggingFaceH4/MATH-500          | math500/test.jsonl         | problem              | answer       |
| svamp       | ChilleD/SVAMP                   | svamp/test.jsonl           | Body + Question      | Answer       |
| multiarith  | ChilleD/MultiArith              | multiarith/test.jsonl      | input / question     | target       |
| aime24      | HuggingFaceH4/aime_2024         | aime24/test.jsonl          | problem              | answer       |
| game24      | (ToT repo CSV, see GAME24_URL)  | game24/24.csv              | Puzzles              | 24           |

Game of 24 is one file: its ``train`` split is rows 1-900 and ``test`` is the whole file, benchmarked on
rows 901-1000 (``offset=900, limit=100``), the ToT paper's test rows.
| mgsm_ru/_en | juletxara/mgsm (ru / en)        | mgsm/mgsm_{ru,en}.tsv      | column 1             | column 2     |

Every example carries ``id`` (dataset:split:row), ``dataset`` and ``kind`` (``number``, ``latex`` or
``game24``), which picks the checker; GSM8K examples also carry ``solution``, the worked solution
with its ``<<48/2=24>>`` calculator notes (what ``reasonflow.finetune`` learns from). Gold answers are normalised (``"1,000"`` becomes ``"1000"``).

Not guaranteed: hub copies can change upstream; pin a revision with ``revision=`` for reproducible
runs. Row order is the file's order; ``seed`` shuffles before ``offset``/``limit``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import dspy

from reasonflow.errors import DatasetError

GAME24_URL = "https://raw.githubusercontent.com/princeton-nlp/tree-of-thought-llm/master/src/tot/data/24/24.csv"
GAME24_TRAIN_ROWS = 900  # rows 1-900 train; 901-1000 are the ToT paper's test rows, never training data


def _num(value) -> str:
    """Canonical text of a numeric gold answer: no thousands separators, no trailing .0."""
    text = str(value).strip().replace(",", "")
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else repr(number)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # checker family: number | latex | game24
    hub: tuple  # load_dataset args
    local: str  # path under data_dir, {split} filled in
    to_example: Callable[[dict], tuple[str, str]]
    splits: tuple[str, ...] = ("test",)
    local_format: str = "json"
    local_columns: tuple[str, ...] | None = None
    solution: Callable[[dict], str] | None = None  # the worked solution, where the dataset has one
    # One file, no split of its own: "train" is its first ``train_rows`` rows; "test" is the whole file,
    # so that row ids (and ``--offset``) stay the file's own numbering.
    train_rows: int | None = None


def _gsm8k(row):
    return row["question"], _num(row["answer"].split("####")[-1])


def _svamp(row):
    body, question = row.get("Body", ""), row.get("Question", "")
    return f"{body.strip()} {question.strip()}".strip(), _num(row["Answer"])


def _multiarith(row):
    return row.get("input") or row["question"], _num(row.get("target", row.get("final_ans")))


DATASETS: dict[str, DatasetSpec] = {
    "gsm8k": DatasetSpec("gsm8k", "number", ("openai/gsm8k", "main"), "gsm8k/{split}.jsonl", _gsm8k,
                         splits=("test", "train"), solution=lambda r: r["answer"]),
    "math500": DatasetSpec("math500", "latex", ("HuggingFaceH4/MATH-500",), "math500/test.jsonl",
                           lambda r: (r["problem"], str(r["answer"]))),
    "svamp": DatasetSpec("svamp", "number", ("ChilleD/SVAMP",), "svamp/test.jsonl", _svamp),
    "multiarith": DatasetSpec("multiarith", "number", ("ChilleD/MultiArith",), "multiarith/test.jsonl", _multiarith),
    "aime24": DatasetSpec("aime24", "latex", ("HuggingFaceH4/aime_2024",), "aime24/test.jsonl",
                          lambda r: (r["problem"], str(r["answer"])), splits=("test", "train")),
    "game24": DatasetSpec("game24", "game24", ("csv", None), "game24/24.csv",
                          lambda r: (str(r["Puzzles"]), "24"), local_format="csv", splits=("test", "train"),
                          train_rows=GAME24_TRAIN_ROWS),
    "mgsm_ru": DatasetSpec("mgsm_ru", "number", ("juletxara/mgsm", "ru"), "mgsm/mgsm_ru.tsv",
                           lambda r: (r["question"], _num(r["answer_number"])), local_format="tsv",
                           local_columns=("question", "answer_number")),
    "mgsm_en": DatasetSpec("mgsm_en", "number", ("juletxara/mgsm", "en"), "mgsm/mgsm_en.tsv",
                           lambda r: (r["question"], _num(r["answer_number"])), local_format="tsv",
                           local_columns=("question", "answer_number")),
}


def data_dir_from_env(data_dir: str | os.PathLike | None = None) -> Path | None:
    value = data_dir or os.environ.get("REASONFLOW_DATA_DIR")
    return Path(value).expanduser() if value else None


def _load_rows(spec: DatasetSpec, split: str, data_dir: Path | None, revision: str | None):
    import datasets

    datasets.disable_progress_bars()
    if data_dir is not None:
        path = data_dir / spec.local.format(split=split)
        if not path.is_file():
            raise DatasetError(f"{spec.name}: no file {path} (expected the layout {spec.local!r} under --data-dir)")
        if spec.local_format == "tsv":
            return datasets.load_dataset("csv", data_files=str(path), split="train", delimiter="\t",
                                         column_names=list(spec.local_columns), quoting=3)
        return datasets.load_dataset(spec.local_format, data_files=str(path), split="train")
    if spec.name == "game24":
        return datasets.load_dataset("csv", data_files=GAME24_URL, split="train")
    return datasets.load_dataset(*[a for a in spec.hub if a], split=split, revision=revision)


def load(name: str, *, split: str = "test", data_dir: str | os.PathLike | None = None, limit: int | None = None,
         offset: int = 0, seed: int | None = None, revision: str | None = None) -> list[dspy.Example]:
    """Load ``name`` as a list of ``dspy.Example`` with ``question`` as the input field."""
    spec = DATASETS.get(name)
    if spec is None:
        raise DatasetError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    if split not in spec.splits:
        raise DatasetError(f"{name} has splits {list(spec.splits)}, not {split!r}")
    if offset < 0 or (limit is not None and limit < 0):
        raise DatasetError(f"offset and limit must be >= 0, got offset={offset}, limit={limit}")
    try:
        rows = _load_rows(spec, split, data_dir_from_env(data_dir), revision)
    except DatasetError:
        raise
    except Exception as exc:  # datasets raises many types (network, parse, missing config)
        raise DatasetError(f"could not load {name} ({split}): {exc}") from exc
    indices = list(range(len(rows) if split != "train" or spec.train_rows is None else min(len(rows), spec.train_rows)))
    if seed is not None:
        import random

        random.Random(seed).shuffle(indices)
    indices = indices[offset: None if limit is None else offset + limit]
    examples = []
    for i in indices:
        try:
            question, answer = spec.to_example(rows[i])
            extra = {"solution": spec.solution(rows[i])} if spec.solution else {}
        except (KeyError, TypeError, AttributeError) as exc:
            raise DatasetError(f"{name} row {i} lacks an expected field: {exc}") from exc
        examples.append(dspy.Example(question=question, answer=answer, id=f"{name}:{split}:{i}",
                                     dataset=name, kind=spec.kind, **extra).with_inputs("question"))
    return examples


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (read in 1 MiB blocks)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source(name: str, *, split: str = "test", data_dir: str | os.PathLike | None = None,
           revision: str | None = None) -> dict:
    """Where ``load(name, split=..., data_dir=..., revision=...)`` reads from, for a run's provenance:
    ``{"source": "local", "path", "sha256"}`` for a local file, ``{"source": "hub", "id", "config",
    "revision"}`` for the hub (``revision`` None: unpinned, whatever the hub serves today), or
    ``{"source": "url", "url"}`` (Game of 24 without a local copy)."""
    spec = DATASETS.get(name)
    if spec is None:
        raise DatasetError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    base = {"name": name, "split": split}
    local = data_dir_from_env(data_dir)
    if local is not None:
        path = local / spec.local.format(split=split)
        if not path.is_file():
            raise DatasetError(f"{spec.name}: no file {path} (expected the layout {spec.local!r} under --data-dir)")
        return {**base, "source": "local", "path": str(path.resolve()), "sha256": sha256_file(path)}
    if spec.name == "game24":
        return {**base, "source": "url", "url": GAME24_URL}
    hub_id, *config = [a for a in spec.hub if a]
    return {**base, "source": "hub", "id": hub_id, "config": config[0] if config else None, "revision": revision}
