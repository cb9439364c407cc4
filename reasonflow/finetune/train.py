"""LoRA supervised fine-tuning with PEFT and TRL's SFTTrainer, into a servable adapter directory.

``train(examples, out_dir)`` renders the examples (``reasonflow.finetune.data.render``: the inference
prompt and the compact JSON completion), trains a LoRA adapter on the completion tokens only (TRL's
prompt/completion format masks the prompt), and writes into ``out_dir``:

    adapter_model.safetensors, adapter_config.json   the PEFT adapter (vLLM's --lora-modules loads it)
    reasonflow-adapter.json                          the manifest (written last: its presence marks
                                                     a finished adapter)
    loss.png, log.json                               the loss curve and the trainer's log
    data.jsonl                                       the rendered training examples with their ids
    checkpoints/                                     trainer checkpoints (removed when finished)
    snapshots/step-N/                                with ``snapshot_steps``: the adapter at step N (bf16,
                                                     ~10 MB, servable) and the trainer state to resume;
                                                     also at the step where ``max_minutes`` stops it
    learning_curve.json, learning_curve.png          with dev examples: dev accuracy against training
                                                     tokens (``reasonflow.finetune.curve``)

Training is seeded (model init, data order) and resumable: rerun the same command and it continues
from the last checkpoint, or, where the checkpoints are gone (another machine, a fresh clone), from
the last snapshot, whose Adam moments are not kept (they would triple its size) and start again at
zero; the step, learning-rate schedule and data order carry on. ``max_minutes`` stops it early
(recorded in the manifest) with what it has learnt so far. The manifest records the training tokens
(prompt and completion, padding excluded: the trainer's ``num_input_tokens_seen``).

Speed: the loss runs the LM head (49k-word vocabulary) at the completion positions only
(``completion_loss``); TRL's own loss scores every position, prompt and padding too, off CUDA. Batches
are padded to their longest row and grouped by length; activation recomputation is off.
``python evals/train_speed.py`` measures the trainer against a bare PEFT loop on the same batches.

Not guaranteed: bit-identical results across machines or thread counts (CPU kernels differ).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Literal

from reasonflow.config import DEFAULT_MODEL, _positive
from reasonflow.errors import ArtifactError, ConfigError
from reasonflow.finetune.data import SFTExample, render

ADAPTER_MANIFEST = "reasonflow-adapter.json"
ADAPTER_MANIFEST_VERSION = 1
SNAPSHOTS = "snapshots"
OPTIMIZER_FILE, SCHEDULER_FILE, STATE_FILE = "optimizer.pt", "scheduler.pt", "trainer_state.json"
DEFAULT_FINETUNE_MAX_MINUTES = 60.0  # the default recipe is sized to finish within this on 2 CPU cores
LOG_EVERY_STEPS = 5
MIN_EXAMPLES = 1


@dataclass(frozen=True)
class LoRAConfig:
    """The recipe's hyperparameters. The defaults are the committed adapter's."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = "all-linear"
    learning_rate: float = 8e-4
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512  # tokens of prompt + completion; TRL truncates longer ones (PoT code is capped at 800 chars)
    warmup_ratio: float = 0.05
    seed: int = 0
    max_minutes: float = DEFAULT_FINETUNE_MAX_MINUTES
    save_steps: int = 25
    snapshot_steps: int = 0  # > 0: a small adapter snapshot (and a learning-curve point) every this many steps
    device: Literal["cpu", "cuda"] = "cpu"
    save_dtype: Literal["bfloat16", "float32"] = "bfloat16"

    def __post_init__(self):
        for name in ("rank", "alpha", "learning_rate", "epochs", "batch_size", "grad_accum", "max_length",
                     "max_minutes", "save_steps"):
            _positive(name, getattr(self, name))
        if isinstance(self.snapshot_steps, bool) or not isinstance(self.snapshot_steps, int) or self.snapshot_steps < 0:
            raise ConfigError(f"snapshot_steps must be an int >= 0, got {self.snapshot_steps!r}")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be cpu or cuda, got {self.device!r}")
        if self.save_dtype not in ("bfloat16", "float32"):
            raise ConfigError(f"save_dtype must be bfloat16 or float32, got {self.save_dtype!r}")
        if not 0 <= self.dropout < 1 or not 0 <= self.warmup_ratio < 1:
            raise ConfigError("dropout and warmup_ratio must be in [0, 1)")


def base_model_info(model: str) -> tuple[Path, dict]:
    """(directory, {"name", "sha256"}) of a registered model or a local HF directory. The sha256 is
    over the weight files (from the model's manifest where reasonflow built it)."""
    from reasonflow.engine.model import MANIFEST_NAME, resolve_model, sha256_file

    directory, name = resolve_model(model)
    weights = sorted(p.name for p in directory.glob("*.safetensors"))
    recorded = {}
    if (directory / MANIFEST_NAME).is_file():
        recorded = json.loads((directory / MANIFEST_NAME).read_text())
    files = recorded.get("files", {})
    digests = {w: files.get(w, {}).get("sha256") or sha256_file(directory / w) for w in weights}
    return directory, {"name": name, "hub_id": recorded.get("hub_id"), "weights_sha256": digests}


def _versions() -> dict:
    names = ("reasonflow", "torch", "transformers", "peft", "trl", "dspy", "datasets")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def read_manifest(adapter_dir: str | Path) -> dict:
    """The manifest of a finished adapter; ``ArtifactError`` if it is missing or not one."""
    path = Path(adapter_dir) / ADAPTER_MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{adapter_dir} is not a finished reasonflow adapter ({path}: {exc})") from exc
    if manifest.get("version") != ADAPTER_MANIFEST_VERSION or not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise ArtifactError(f"{adapter_dir}: unsupported adapter manifest version or no adapter_config.json")
    return manifest


def build_trainer(rows: list[dict], out: Path, model_dir: Path, config: LoRAConfig,
                  init_adapter: str | Path | None = None, progress: bool = True, callbacks=()):
    """TRL's SFTTrainer over rendered ``rows`` (prompt/completion messages): LoRA on the base model
    (or on ``init_adapter``), loss on completion tokens only. Returns (trainer, time-limit callback)."""
    import datasets
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    scaled = [k for k in ("final_logit_softcapping", "logit_scale", "logits_scaling")
              if getattr(model.config.get_text_config(), k, None) not in (None, 1.0)]
    if scaled:  # completion_loss applies the LM head as a plain projection
        raise ConfigError(f"{model_dir}: models that scale or soft-cap their logits ({scaled}) are not supported")
    peft_config = None
    if init_adapter:
        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
        # The saved config names the base by its hub id (_portable_config); pointed back at the local
        # weights, PEFT's save (checkpoints, final) reads config.json there instead of asking the hub.
        for adapter_config in model.peft_config.values():
            adapter_config.base_model_name_or_path = str(model_dir)
    else:
        peft_config = lora_config(config)
    dataset = datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    args = SFTConfig(
        output_dir=str(out / "checkpoints"), num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate, lr_scheduler_type="cosine", warmup_steps=config.warmup_ratio,
        logging_steps=LOG_EVERY_STEPS, save_steps=config.save_steps, save_total_limit=2, seed=config.seed,
        data_seed=config.seed, max_length=config.max_length, completion_only_loss=True, packing=False,
        use_cpu=config.device == "cpu", bf16=config.device == "cuda", report_to="none",
        # TRL turns activation recomputation on by default: it saves memory we have, at ~1.5x the time.
        gradient_checkpointing=False,
        # Random batches, not grouped by length: grouping makes each batch one kind of example (a
        # Game of 24 value batch all dead two-number states, the next all three-number ones), and the
        # model then tracked the last batches' base rate instead of the input: its p(sure) and its
        # choice to write trials moved together for every state from checkpoint to checkpoint.
        dataloader_num_workers=0, disable_tqdm=not progress, train_sampling_strategy="random",
        include_num_input_tokens_seen="non_padding")
    limit = _time_limit(config.max_minutes * 60)
    trainer = _completion_trainer_class()(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                          peft_config=peft_config, callbacks=[limit, *callbacks])
    return trainer, limit


def lora_config(config: LoRAConfig):
    """PEFT's LoraConfig for the recipe's hyperparameters."""
    from peft import LoraConfig

    return LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=config.target_modules, task_type="CAUSAL_LM")


def completion_loss(model, batch: dict, num_items=None):
    """Next-token cross-entropy summed over the completion tokens (labels != -100) and divided by
    ``num_items`` (default: their count), as a causal LM's own loss computes it, but with the LM head
    run at those positions only. Returns (loss, logits at those positions, their target ids).

    ``model`` is a causal LM or a PEFT model around one; its head must be a plain projection (no
    logit scaling or soft-capping, as Llama-family models have)."""
    import torch
    import torch.nn.functional as F
    from peft import PeftModel

    lm = model.get_base_model() if isinstance(model, PeftModel) else model
    hidden = lm.base_model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                           use_cache=False).last_hidden_state
    labels = batch["labels"][:, 1:]  # position t predicts token t + 1
    mask = labels != -100
    logits = lm.get_output_embeddings()(hidden[:, :-1][mask])
    targets = labels[mask]
    total = F.cross_entropy(logits.float(), targets, reduction="sum")
    return total / torch.as_tensor(mask.sum() if num_items is None else num_items).clamp(min=1), logits, targets


def _completion_trainer_class():
    """SFTTrainer whose loss is ``completion_loss``; it logs TRL's metrics (token accuracy, entropy,
    tokens seen) from the completion logits."""
    import torch
    from trl import SFTTrainer

    class CompletionSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, logits, targets = completion_loss(model, inputs, num_items_in_batch)
            metrics = self._metrics["train" if model.training else "eval"]
            with torch.no_grad():
                log_probs = logits.float().log_softmax(-1)
                entropy = -(log_probs.exp() * log_probs).sum(-1)
                metrics["entropy"].append(entropy.mean().item() if len(targets) else 0.0)
                metrics["mean_token_accuracy"].append(
                    (log_probs.argmax(-1) == targets).float().mean().item() if len(targets) else 0.0)
            if model.training:
                self._total_train_tokens += int(inputs["attention_mask"].sum())
            metrics["num_tokens"] = [self._total_train_tokens]
            return (loss, {"logits": logits}) if return_outputs else loss

        def _load_optimizer_and_scheduler(self, checkpoint):
            super()._load_optimizer_and_scheduler(checkpoint)
            # A snapshot keeps the schedule but not the optimizer; the Trainer loads both or neither.
            if checkpoint and not (Path(checkpoint) / OPTIMIZER_FILE).is_file() and (Path(checkpoint) / SCHEDULER_FILE).is_file():
                self.lr_scheduler.load_state_dict(torch.load(Path(checkpoint) / SCHEDULER_FILE, weights_only=True))

    return CompletionSFTTrainer


def _resume_point(out: Path) -> Path | None:
    """The latest trainer checkpoint or snapshot (a checkpoint wins a tie: it has the optimizer), or None."""
    found = []
    for kind, pattern in ((1, "checkpoints/checkpoint-*"), (0, f"{SNAPSHOTS}/step-*")):
        for p in out.glob(pattern):
            number = p.name.rsplit("-", 1)[-1]
            if number.isdigit() and (p / STATE_FILE).is_file():
                found.append((int(number), kind, p))
    return max(found)[2] if found else None


def train(examples: list[SFTExample], out_dir: str | Path, *, base_model: str = DEFAULT_MODEL,
          config: LoRAConfig = LoRAConfig(), sources: dict | None = None, init_adapter: str | Path | None = None,
          resume: bool = True, progress: bool = True, prompt_format: str = "json",
          dev: list | None = None) -> dict:
    """Train a LoRA adapter on ``examples`` into ``out_dir`` and return its manifest.

    ``init_adapter`` continues from an existing adapter (expert iteration round 2). ``sources``
    describes where the examples came from; it goes into the manifest. A run stopped by
    ``max_minutes`` writes its adapter and keeps its checkpoints, so the same call continues it.
    ``dev`` (GSM8K rows never trained on) adds the learning curve, a point per snapshot."""
    if len(examples) < MIN_EXAMPLES:
        raise ConfigError("no training examples: every source came back empty")
    from reasonflow.adapter import PROMPT_FORMATS, CompactAdapter, StructuredAdapter

    if prompt_format not in PROMPT_FORMATS:
        raise ConfigError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / ADAPTER_MANIFEST).unlink(missing_ok=True)  # unfinished until written again
    if init_adapter:
        read_manifest(init_adapter)
    model_dir, base = base_model_info(base_model)
    adapter = CompactAdapter() if prompt_format == "compact" else StructuredAdapter()
    rows = [{**render(ex, adapter), "id": ex.id, "source": ex.source, "format": ex.format} for ex in examples]
    with open(out / "data.jsonl", "w") as fh:
        fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    checkpoint = _resume_point(out) if resume else None
    if not resume:
        shutil.rmtree(out / SNAPSHOTS, ignore_errors=True)
    callbacks, snapshot = [], None
    if config.snapshot_steps:
        snapshot = _snapshot_callback(out, config, base, prompt_format)
        callbacks.append(snapshot)
    if dev:
        from reasonflow.finetune import curve
        from transformers import AutoTokenizer

        callbacks.append(curve.curve_callback(out, curve.dev_examples(dev), AutoTokenizer.from_pretrained(model_dir),
                                              adapter, config.snapshot_steps, resumed=checkpoint is not None,
                                              title=f"LoRA r={config.rank} on {base['name']}: GSM8K train dev slice"))
    trainer, limit = build_trainer(rows, out, model_dir, config, init_adapter, progress, callbacks)
    if snapshot is not None:
        snapshot.trainer = trainer
    started = time.time()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.time() - started

    trainer.model.save_pretrained(out)
    if config.save_dtype == "bfloat16":
        _cast_adapter(out / "adapter_model.safetensors", torch.bfloat16)
    _portable_config(out, base)
    log = trainer.state.log_history
    (out / "log.json").write_text(json.dumps(log, indent=1) + "\n")
    losses = [(int(e["step"]), float(e["loss"])) for e in log if "loss" in e]
    plot_loss(losses, out / "loss.png", title=f"LoRA r={config.rank} on {base['name']}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[f"{r['source']}:{r['format']}"] = counts.get(f"{r['source']}:{r['format']}", 0) + 1
    manifest = {
        "version": ADAPTER_MANIFEST_VERSION, "name": out.name, "base_model": base, "prompt_format": prompt_format,
        "init_adapter": str(init_adapter) if init_adapter else None,
        "data": {"examples": len(rows), "by_source_format": counts, "ids": sorted({r["id"] for r in rows}),
                 "sources": sources or {}},
        "hyperparameters": asdict(config),
        "training": {"steps": trainer.state.global_step, "max_steps": trainer.state.max_steps,
                     "epochs": round(trainer.state.epoch or 0, 4), "seconds": round(seconds, 1),
                     "tokens": int(trainer.state.num_input_tokens_seen or 0),
                     "resumed_from_checkpoint": bool(checkpoint),
                     "resumed_from": checkpoint.relative_to(out).as_posix() if checkpoint else None,
                     "stopped_by_time_limit": limit.fired,
                     "final_loss": losses[-1][1] if losses else None,
                     "mean_loss": round(float(result.training_loss), 4) if result.training_loss else None,
                     "loss_first": losses[0][1] if losses else None},
        "versions": _versions(), "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if dev:
        from reasonflow.finetune.curve import read_curve

        manifest["learning_curve"] = [{k: p[k] for k in ("step", "tokens", "accuracy", "ci95", "correct", "questions")}
                                      for p in read_curve(out)]
    if config.snapshot_steps:
        manifest["snapshots"] = sorted((p.relative_to(out).as_posix() for p in (out / SNAPSHOTS).glob("step-*")),
                                       key=lambda name: int(name.rsplit("-", 1)[-1]))
    (out / ADAPTER_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if not limit.fired:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return manifest


def _snapshot_callback(out: Path, config: LoRAConfig, base: dict, prompt_format: str):
    """A TrainerCallback that writes ``snapshots/step-N`` every ``snapshot_steps`` steps and where the
    time limit stops the run: the adapter in bf16 with a portable config and a manifest of its own
    (servable, mergeable), and what a resume needs besides the optimizer (trainer state, learning-rate
    schedule, RNG state)."""
    import torch
    from transformers import TrainerCallback

    class Snapshot(TrainerCallback):
        trainer = None  # set once the trainer exists: its RNG state goes into the snapshot

        def on_step_end(self, args, state, control, model=None, lr_scheduler=None, **kwargs):
            # The time limit stops training before ``max_steps`` (it runs before this callback): keep a
            # snapshot there too, so another machine resumes from where the run got to, not from the
            # last multiple of ``snapshot_steps``.
            stopped_early = control.should_training_stop and state.global_step < state.max_steps
            if state.global_step % config.snapshot_steps and not stopped_early:
                return control
            where = out / SNAPSHOTS / f"step-{state.global_step}"
            where.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(where)
            _cast_adapter(where / "adapter_model.safetensors", torch.bfloat16)
            _portable_config(where, base)
            state.save_to_json(str(where / STATE_FILE))
            if lr_scheduler is not None:
                torch.save(lr_scheduler.state_dict(), where / SCHEDULER_FILE)
            if self.trainer is not None:  # the data order of later epochs draws from these
                self.trainer._save_rng_state(str(where))
            manifest = {"version": ADAPTER_MANIFEST_VERSION, "name": f"{out.name}-step-{state.global_step}",
                        "snapshot_of": out.name, "base_model": base, "prompt_format": prompt_format,
                        "hyperparameters": asdict(config),
                        "training": {"steps": state.global_step, "max_steps": state.max_steps,
                                     "epochs": round(state.epoch or 0, 4), "tokens": int(state.num_input_tokens_seen or 0)}}
            (where / ADAPTER_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            return control

    return Snapshot()


def _time_limit(seconds: float):
    """A TrainerCallback that stops training (saving a checkpoint) once ``seconds`` have passed."""
    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        def __init__(self):
            self.fired, self.started = False, time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() - self.started > seconds:
                self.fired = control.should_training_stop = control.should_save = True
            return control

    return TimeLimit()


def _portable_config(out: Path, base: dict) -> None:
    """Name the base model by its registry/hub name, not by this machine's cache path, and drop
    PEFT's generated model card (the manifest documents the adapter)."""
    path = out / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base.get("hub_id") or base["name"]
    path.write_text(json.dumps(config, indent=2) + "\n")
    (out / "README.md").unlink(missing_ok=True)


def _cast_adapter(path: Path, dtype) -> None:
    from safetensors.torch import load_file, save_file

    tensors = {k: v.to(dtype) for k, v in load_file(path).items()}
    save_file(tensors, path, metadata={"format": "pt"})


def plot_loss(losses: list[tuple[int, float]], path: Path, title: str = "training loss") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if losses:
        ax.plot([s for s, _ in losses], [v for _, v in losses], marker=".")
    ax.set(xlabel="step", ylabel="loss (completion tokens)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
