"""The learning curve: dev accuracy of the adapter being trained, against the training tokens seen.

``evaluate(model, tokenizer, dev, adapter)`` scores the model in-process, with no engine: for each
dev question (GSM8K train rows of the dev slice, never trained on; see ``recipe.DEV_ROWS``) it renders
the ``gsm8k.pot`` prompt exactly as inference does (the adapter's prompt format), generates greedily
(``DEV_MAX_NEW_TOKENS``, batches of ``DEV_BATCH``, stopping where the JSON closes), reads the ``code`` field of the JSON, runs it in
``reasonflow.sandbox`` and checks the answer with the number checker. ``CurveCallback`` does that at
step 0 and every ``LoRAConfig.snapshot_steps`` steps and at the end of training, and keeps the points
in ``learning_curve.json`` (kept across resumes) and ``learning_curve.png`` beside ``loss.png``.

Not guaranteed: it is free PoT without guided decoding (a model that breaks the JSON scores 0 here
where vLLM would have closed it), at temperature 0, on ``dev_questions`` questions (bounded by
``DEV_ROWS``): the interval on 50 questions is wide. Test accuracy comes from the bench, not this.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from reasonflow.bench.stats import wilson_interval
from reasonflow.checking import check
from reasonflow.finetune.data import SFTExample, prompt_messages

DEV_BATCH = 16  # dev questions generated at once
DEV_MAX_NEW_TOKENS = 192  # a gold program in compact JSON is 20-120 tokens (the code field holds 800 chars)
STOP = '"}'  # the end of the one-field JSON object: generation stops there
CURVE_FILE = "learning_curve.json"


def dev_examples(rows) -> list[SFTExample]:
    """Dev rows (``dspy.Example``s of the train split) as prompt-only PoT examples."""
    return [SFTExample(r.id, "dev", "pot", r.question, {}, answer=r.answer) for r in rows]


def read_code(text: str) -> str | None:
    """The ``code`` field of a generated JSON object (what follows it is ignored), or None."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    code = value.get("code") if isinstance(value, dict) else None
    return code if isinstance(code, str) and code.strip() else None


async def _run_all(codes: list[str | None]) -> list:
    from reasonflow.errors import SandboxError
    from reasonflow.sandbox import arun_code

    async def one(code):
        if code is None:
            return None
        try:
            return (await arun_code(code)).answer
        except SandboxError:
            return None

    return await asyncio.gather(*(one(c) for c in codes))


def generate(model, tokenizer, dev: list[SFTExample], adapter=None) -> list[str]:
    """Greedy completions of the dev prompts, in batches, left-padded."""
    import torch

    texts = [tokenizer.apply_chat_template(prompt_messages(ex, adapter), add_generation_prompt=True, tokenize=False)
             for ex in dev]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(texts), DEV_BATCH):
                batch = tokenizer(texts[i:i + DEV_BATCH], return_tensors="pt", padding=True,
                                  add_special_tokens=False).to(model.device)
                ids = model.generate(**batch, max_new_tokens=DEV_MAX_NEW_TOKENS, do_sample=False,
                                     stop_strings=[STOP], tokenizer=tokenizer,
                                     pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
                out += tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def _correct(answer, gold) -> bool:
    try:
        return answer is not None and bool(check("number", answer, gold))
    except Exception:  # a checker failure scores the answer wrong, as in the bench
        return False


def evaluate(model, tokenizer, dev: list[SFTExample], adapter=None) -> dict:
    """{"questions", "parsed", "ran", "correct", "accuracy", "ci95"} of the model on ``dev``."""
    codes = [read_code(t) for t in generate(model, tokenizer, dev, adapter)]
    answers = asyncio.run(_run_all(codes))
    correct = sum(_correct(a, ex.answer) for a, ex in zip(answers, dev))
    lo, hi = wilson_interval(correct, len(dev))
    return {"questions": len(dev), "parsed": sum(c is not None for c in codes),
            "ran": sum(a is not None for a in answers), "correct": correct,
            "accuracy": round(correct / len(dev), 4) if dev else None, "ci95": [round(lo, 4), round(hi, 4)]}


def read_curve(out: Path) -> list[dict]:
    path = Path(out) / CURVE_FILE
    try:
        points = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return points if isinstance(points, list) else []


def plot_curve(points: list[dict], path: Path, title: str = "dev accuracy") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if points:
        xs = [p["tokens"] for p in points]
        ys = [100 * p["accuracy"] for p in points]
        err = [[100 * (p["accuracy"] - p["ci95"][0]) for p in points], [100 * (p["ci95"][1] - p["accuracy"]) for p in points]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3)
    ax.set(xlabel="training tokens", ylabel="dev accuracy, % (95% CI)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def curve_callback(out: Path, dev: list[SFTExample], tokenizer, adapter, every: int, resumed: bool,
                   title: str = "dev accuracy"):
    """A TrainerCallback that adds a curve point at step 0, every ``every`` steps and at the end."""
    from transformers import TrainerCallback

    out = Path(out)

    class CurveCallback(TrainerCallback):
        def __init__(self):
            self.points = read_curve(out) if resumed else []

        def add(self, state, model):
            if any(p["step"] == state.global_step for p in self.points):
                return
            point = {"step": state.global_step, "tokens": int(state.num_input_tokens_seen or 0),
                     "epoch": round(state.epoch or 0.0, 4), **evaluate(model, tokenizer, dev, adapter)}
            self.points.append(point)
            (out / CURVE_FILE).write_text(json.dumps(self.points, indent=1) + "\n")
            plot_curve(self.points, out / "learning_curve.png", title)

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step == 0:
                self.add(state, model)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if every and state.global_step % every == 0:
                self.add(state, model)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            self.add(state, model)

    return CurveCallback()
