"""Training tokens/s of reasonflow's LoRA trainer (TRL's SFTTrainer, ``reasonflow.finetune.train``)
against a bare PyTorch/PEFT loop on the same batches, interleaved step by step in one process.

    python evals/train_speed.py --rows short [--steps 6]               # ~40-token rows, batch 16 (Game of 24)
    python evals/train_speed.py --rows long --data-dir ../shared/data  # ~350-token GSM8K rows, batch 8

The trainer runs its own loop (``build_trainer`` as ``reasonflow finetune`` builds it); after each of
its steps a callback runs one bare step on the batch the trainer just trained on: a second copy of the
base model with the same LoRA config, ``model(**batch).loss`` over the full logits (``--bare-head
completion``: reasonflow's completion-only loss instead), ``backward``, AdamW. So machine noise hits
both, and the only difference is the trainer's loop and loss. A trainer step is timed from the end of
the previous bare step to the end of its own (data loading, clipping, scheduler, logging included);
the first ``--warmup`` steps of each are not counted. Tokens are the batch's non-padding tokens. The
ratio is printed over the totals and as the median of adjacent step pairs (steadier when another
process takes the CPU for a while).

Not guaranteed: absolute tokens/s on a shared CPU (the load average is printed; the ratio is the
figure). Checkpoint saving is left out (``save_steps`` past the last step).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

SHAPES = {"short": 16, "long": 8}  # batch size per row shape, as the recipes use them


def short_rows(count: int, seed: int = 0) -> list[dict]:
    """Game-of-24-sized prompt/completion rows: about 40 prompt tokens, a one-move completion."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b, c, d = (rng.randint(1, 13) for _ in range(4))
        rows.append({"prompt": [{"role": "system", "content": "Game of 24. Propose one move: a op b = c."},
                                {"role": "user", "content": f"Numbers left: {a} {b} {c} {d}"}],
                     "completion": [{"role": "assistant", "content": f"{a} + {b} = {a + b}"}]})
    return rows


def long_rows(count: int, data_dir: str | None) -> list[dict]:
    """GSM8K gold program-of-thought rows, rendered as the GSM8K recipe renders them."""
    from reasonflow import data
    from reasonflow.finetune import gold_examples, render

    kept, _ = gold_examples(data.load("gsm8k", split="train", data_dir=data_dir, limit=count * 2), ["pot"])
    return [render(ex) for ex in kept[:count]]


def interleave(trainer, bare_step, warmup: int):
    """A TrainerCallback that runs ``bare_step(batch)`` after each trainer step on that step's batch
    and times both. The trainer's collator is wrapped to record the batches in order."""
    from transformers import TrainerCallback

    batches, collate = [], trainer.data_collator

    def recording(features):
        batches.append(collate(features))
        return batches[-1]

    trainer.data_collator = recording

    class Interleave(TrainerCallback):
        def __init__(self):
            self.times = {"trainer": [], "bare": []}
            self.tokens, self.mark, self.batches = [], None, batches

        def on_train_begin(self, args, state, control, **kwargs):
            self.mark = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            ended = time.perf_counter()
            batch = batches[state.global_step - 1]
            bare_step(batch)
            self.mark, took = time.perf_counter(), (ended - self.mark)
            if state.global_step > warmup:
                self.times["trainer"].append(took)
                self.times["bare"].append(self.mark - ended)
                self.tokens.append(int(batch["attention_mask"].sum()))

    callback = Interleave()
    trainer.add_callback(callback)
    return callback


def bare_loop(model_dir: Path, config, head: str):
    """One step of a plain PEFT loop: (batch) -> None."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from reasonflow.finetune.train import completion_loss, lora_config

    torch.manual_seed(config.seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), lora_config(config))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)

    def step(batch):
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
        loss = model(**inputs).loss if head == "full" else completion_loss(model, inputs)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", choices=sorted(SHAPES), default="short")
    parser.add_argument("--steps", type=int, default=6, help="measured steps of each (after warmup)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--bare-head", choices=("full", "completion"), default="full",
                        help="the bare loop's loss: the model's own (full logits) or the completion-only one")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    import torch

    from reasonflow.finetune import LoRAConfig
    from reasonflow.finetune.train import base_model_info, build_trainer

    batch_size, steps = SHAPES[args.rows], args.warmup + args.steps
    rows = short_rows(batch_size * steps) if args.rows == "short" else long_rows(batch_size * steps, args.data_dir)
    config = LoRAConfig(batch_size=batch_size, max_steps=steps, save_steps=steps + 1)
    model_dir = base_model_info(args.model)[0]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = build_trainer(rows, Path(tmp), model_dir, config, progress=False)
        callback = interleave(trainer, bare_loop(model_dir, config, args.bare_head), args.warmup)
        trainer.train()
    seen = sum(int(b["attention_mask"].sum()) for b in callback.batches[:steps])
    assert trainer._total_train_tokens == seen, "the bare loop did not get the trainer's batches"
    tokens = sum(callback.tokens)
    speed = {name: tokens / sum(times) for name, times in callback.times.items()}
    print(f"rows={args.rows} batch={batch_size} steps={args.steps} (+{args.warmup} warmup) "
          f"tokens/step={tokens / len(callback.tokens):.0f} torch_threads={torch.get_num_threads()} "
          f"bare_head={args.bare_head}")
    for name, times in callback.times.items():
        print(f"  {name:8s} {speed[name]:7.1f} tok/s   step s: " + " ".join(f"{t:.2f}" for t in times))
    paired = statistics.median(b / t for t, b in zip(callback.times["trainer"], callback.times["bare"]))
    print(f"  ratio trainer/bare = {speed['trainer'] / speed['bare']:.3f} (total tokens over total time), "
          f"{paired:.3f} (median over adjacent step pairs)")
    print(f"  load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
