"""Fold a LoRA adapter into the base weights: a plain model directory the engine serves at full speed.

vLLM on CPU applies LoRA with per-token fallback kernels: on 2 cores an adapter request decodes at
roughly a third of the base model's rate (measured by the bench's peak probe: 29.6 tok/s for the
adapter vs 82 tok/s for the base at 16 sequences). A merged model computes the same function
(W + alpha/r * B A, in the base's float32) with none of that cost, so long measurements and search
rounds run on it. ``--lora`` stays the way to serve several adapters beside the base from one engine.

    reasonflow merge programs/adapters/gsm8k-pot --out runs/merged/gsm8k-pot
    reasonflow engine up --model runs/merged/gsm8k-pot      # served as "gsm8k-pot"

The output holds the merged safetensors, the base model's tokenizer and chat template, and
``reasonflow-merged.json`` (the adapter's manifest plus the merged weights' sha256), written last.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from reasonflow.config import DEFAULT_MODEL
from reasonflow.errors import ConfigError
from reasonflow.finetune.train import _versions, base_model_info, read_manifest

MERGED_MANIFEST = "reasonflow-merged.json"
# What a served model directory needs from the base besides the weights.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "generation_config.json")


def merge(adapter_dir: str | Path, out_dir: str | Path, *, base_model: str = DEFAULT_MODEL) -> dict:
    """Write ``adapter_dir`` merged into ``base_model`` to ``out_dir`` (a new directory) and return its
    manifest. The directory's name becomes the engine's served model name."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from reasonflow.engine.model import sha256_file

    adapter = read_manifest(adapter_dir)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; merge into a new directory")
    model_dir, base = base_model_info(base_model)
    if adapter["base_model"]["weights_sha256"] != base["weights_sha256"]:
        raise ConfigError(f"{adapter_dir} was trained on other base weights than {base_model}")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)
    manifest = {"name": out.name, "adapter": str(adapter_dir), "adapter_manifest": adapter, "base_model": base,
                "weights_sha256": {p.name: sha256_file(p) for p in sorted(out.glob("*.safetensors"))},
                "versions": _versions()}
    (out / MERGED_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
