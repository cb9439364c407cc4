"""The fine-tuning pipeline end to end on a tiny budget: ``reasonflow finetune`` trains a LoRA adapter
for a few steps on 16 gold examples (the real base model, PEFT and TRL on CPU), writes a servable
adapter with its manifest and loss curve, masks the prompt, and resumes from its checkpoint."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reasonflow import data
from reasonflow.cli import main
from reasonflow.errors import ArtifactError, ConfigError
from reasonflow.finetune import LoRAConfig, gold_examples, read_manifest, render, train
from reasonflow.finetune.train import base_model_info, build_trainer, completion_loss

TINY = dict(batch_size=4, max_length=512, save_steps=1)


@pytest.fixture(scope="module")
def examples(data_dir):
    kept, _ = gold_examples(data.load("gsm8k", split="train", data_dir=data_dir, limit=24), ["pot"])
    return kept[:16]


@pytest.fixture(scope="module")
def cli_adapter(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapters") / "tiny-pot"
    code = main(["finetune", "--out", str(out), "--gold", "pot=16", "--max-steps", "2", "--batch-size", "4",
                 "--data-dir", str(data_dir)])
    assert code == 0
    return out


def test_cli_writes_a_servable_adapter_with_its_manifest(cli_adapter):
    manifest = read_manifest(cli_adapter)
    for name in ("adapter_model.safetensors", "adapter_config.json", "loss.png", "data.jsonl", "log.json"):
        assert (cli_adapter / name).is_file(), name
    assert (cli_adapter / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (cli_adapter / "checkpoints").exists()  # finished: checkpoints removed
    assert manifest["name"] == "tiny-pot"
    assert manifest["base_model"]["name"] == "smollm2-135m"
    assert all(len(d) == 64 for d in manifest["base_model"]["weights_sha256"].values())
    assert manifest["data"]["examples"] == 16 and manifest["data"]["by_source_format"] == {"gold:pot": 16}
    assert len(manifest["data"]["ids"]) == 16 and manifest["data"]["sources"]["gold"]["pot"]["kept"] == 16
    assert manifest["hyperparameters"]["rank"] == 16 and manifest["hyperparameters"]["target_modules"] == "all-linear"
    assert manifest["training"]["steps"] == 2 and manifest["training"]["mean_loss"] > 0
    assert set(manifest["versions"]) >= {"torch", "transformers", "peft", "trl"}
    config = json.loads((cli_adapter / "adapter_config.json").read_text())
    assert config["r"] == 16 and config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_adapter_is_saved_in_bf16_and_loads_with_peft(cli_adapter):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    tensors = load_file(cli_adapter / "adapter_model.safetensors")
    assert tensors and all(t.dtype == torch.bfloat16 for t in tensors.values())
    assert any("q_proj.lora_A" in k for k in tensors) and any("down_proj.lora_B" in k for k in tensors)
    base = AutoModelForCausalLM.from_pretrained(base_model_info("smollm2-135m")[0], dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(cli_adapter))
    assert sum("lora_A" in name for name, _ in model.named_parameters()) == 30 * 7  # 30 layers x 7 linears


def test_loss_covers_the_completion_only(examples, tmp_path):
    rows = [render(ex) for ex in examples[:2]]
    trainer, _ = build_trainer(rows, tmp_path, base_model_info("smollm2-135m")[0], LoRAConfig(max_steps=1, **TINY))
    tokenizer = trainer.processing_class
    for row, item in zip(rows, trainer.train_dataset):
        learnt_ids = [t for t in item["labels"] if t != -100]  # -100: no loss
        assert item["labels"][0] == -100 and 0 < len(learnt_ids) < len(item["input_ids"])
        assert item["labels"][-len(learnt_ids):] == item["input_ids"][-len(learnt_ids):]  # the tail is learnt
        learnt = tokenizer.decode(learnt_ids)
        assert learnt.startswith(row["completion"][0]["content"])  # exactly the assistant's JSON (+ end token)
        assert learnt.removeprefix(row["completion"][0]["content"]).strip() in ("<|im_end|>", "")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A random 2-layer Llama with the real tokenizer (so the real chat template and vocabulary)."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    base_dir, out = base_model_info("smollm2-135m")[0], tmp_path_factory.mktemp("tiny-llama")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(base_dir / name, out / name)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                 pad_token_id=2, bos_token_id=1, eos_token_id=2)).save_pretrained(out)
    return out


def test_completion_only_head_gives_the_full_logits_loss_and_gradients(examples, tiny_model_dir, tmp_path):
    import torch

    trainer, _ = build_trainer([render(ex) for ex in examples[:4]], tmp_path, tiny_model_dir,
                               LoRAConfig(max_steps=1, dropout=0.0, **TINY), progress=False)
    model = trainer.model
    for name, param in model.named_parameters():  # LoRA B starts at zero: give every adapter weight a gradient
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    batch = next(iter(trainer.get_train_dataloader()))
    batch = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    assert (batch["attention_mask"] == 0).any()  # the batch has padding, and prompts are masked

    def loss_and_grads(loss):
        model.zero_grad()
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    full, full_grads = loss_and_grads(model(**batch).loss)  # the model's own loss over full logits
    fast, fast_grads = loss_and_grads(trainer.compute_loss(model, dict(batch)))
    assert fast == pytest.approx(full, rel=1e-5) and full > 0
    assert all(torch.allclose(fast_grads[n], g, rtol=1e-4, atol=1e-7) for n, g in full_grads.items())
    assert any(g.abs().sum() > 0 for g in fast_grads.values())


def test_lm_head_runs_at_completion_positions_only(examples, tiny_model_dir, tmp_path):
    trainer, _ = build_trainer([render(ex) for ex in examples[:4]], tmp_path, tiny_model_dir,
                               LoRAConfig(max_steps=1, **TINY), progress=False)
    batch = next(iter(trainer.get_train_dataloader()))
    rows = []
    head = trainer.model.get_base_model().get_output_embeddings()
    handle = head.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    try:
        loss, logits, targets = completion_loss(trainer.model, batch)
    finally:
        handle.remove()
    learnt = int((batch["labels"][:, 1:] != -100).sum())
    assert rows == [learnt] and logits.shape[0] == len(targets) == learnt
    assert learnt < batch["attention_mask"].sum() / 2  # most of a GSM8K row is prompt


def test_training_batches_mix_example_kinds_instead_of_grouping_them_by_length(data_dir, tiny_model_dir, tmp_path):
    """Grouped by length, a Game of 24 value batch was all two-number states (long: trials) or all
    three-number ones (short), and the model learnt the last batches' base rate, not the input."""
    from reasonflow.adapter import CompactAdapter
    from reasonflow.finetune.game24 import exact_examples

    values, _ = exact_examples(30, data_dir=data_dir, parts=("value",))
    two = [ex for ex in values if len(ex.inputs["numbers"].split()) == 2][:16]
    three = [ex for ex in values if len(ex.inputs["numbers"].split()) == 3][:16]
    rows = [render(ex, CompactAdapter()) for ex in two + three]
    trainer, _ = build_trainer(rows, tmp_path, tiny_model_dir, LoRAConfig(max_steps=1, **TINY), progress=False)
    tokenizer = trainer.processing_class
    kinds = [{tokenizer.decode(ids).count('"trials":""') for ids in batch["input_ids"]}
             for batch in trainer.get_train_dataloader()]
    assert len(kinds) == 8 and sum(len(k) == 2 for k in kinds) >= 4  # most batches hold both kinds


def test_a_model_that_soft_caps_its_logits_is_refused(examples, tiny_model_dir, tmp_path):
    import shutil

    capped = shutil.copytree(tiny_model_dir, tmp_path / "capped")
    config = json.loads((capped / "config.json").read_text())
    (capped / "config.json").write_text(json.dumps({**config, "final_logit_softcapping": 30.0}))
    with pytest.raises(ConfigError, match="soft-cap"):
        build_trainer([render(examples[0])], tmp_path, capped, LoRAConfig(max_steps=1, **TINY), progress=False)


def test_speed_script_times_the_trainer_and_a_bare_loop_on_the_same_batches(tiny_model_dir):
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(repo / "evals" / "train_speed.py"), "--rows", "short", "--steps", "2",
                           "--model", str(tiny_model_dir)], capture_output=True, text=True, timeout=600, cwd=repo)
    assert done.returncode == 0, done.stderr[-2000:]  # it asserts that the bare loop saw the trainer's tokens
    for arm in ("trainer", "bare"):  # two timed steps each, the warmup step left out
        assert re.search(rf"^  {arm} +[\d.]+ tok/s +step s: [\d.]+ [\d.]+$", done.stdout, re.M), done.stdout
    assert re.search(r"ratio trainer/bare = [\d.]+", done.stdout)


def test_training_stopped_by_the_time_limit_resumes_from_its_checkpoint(examples, tmp_path):
    first = train(examples[:8], tmp_path, config=LoRAConfig(max_steps=2, max_minutes=1e-6, **TINY), progress=False)
    assert first["training"]["stopped_by_time_limit"] and first["training"]["steps"] == 1
    assert list((tmp_path / "checkpoints").glob("checkpoint-1"))  # kept for the rerun
    second = train(examples[:8], tmp_path, config=LoRAConfig(max_steps=2, **TINY), progress=False)
    assert second["training"]["resumed_from_checkpoint"] and second["training"]["steps"] == 2
    assert not second["training"]["stopped_by_time_limit"]


def test_training_on_from_an_adapter_never_asks_the_hub(cli_adapter, examples, tmp_path, monkeypatch):
    import peft.utils.save_and_load as peft_save

    def no_hub(repo_id, filename, **kwargs):
        raise AssertionError(f"PEFT looked up {filename} in {repo_id} on the hub")

    monkeypatch.setattr(peft_save, "check_file_exists_on_hf_hub", no_hub)
    manifest = train(examples[:4], tmp_path, config=LoRAConfig(max_steps=1, **TINY), init_adapter=cli_adapter,
                     progress=False)
    assert manifest["init_adapter"] == str(cli_adapter) and manifest["training"]["steps"] == 1
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # portable again


def test_a_missing_adapter_is_a_typed_error(tmp_path):
    with pytest.raises(ArtifactError):
        read_manifest(tmp_path)


def test_merged_model_computes_what_base_plus_adapter_computes(cli_adapter, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "tiny-pot-merged"
    assert main(["merge", str(cli_adapter), "--out", str(out)]) == 0
    manifest = json.loads((out / "reasonflow-merged.json").read_text())
    assert manifest["name"] == "tiny-pot-merged" and manifest["adapter_manifest"]["name"] == "tiny-pot"
    assert all(len(d) == 64 for d in manifest["weights_sha256"].values())
    base_dir = base_model_info("smollm2-135m")[0]
    ids = AutoTokenizer.from_pretrained(out)("n1 = 48/2; n2 = 48+n1; answer = n2", return_tensors="pt").input_ids
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)(ids).logits
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        plain = base(ids).logits
        adapted = PeftModel.from_pretrained(base, str(cli_adapter))(ids).logits
    assert (adapted - plain).abs().max() > 1e-3  # the adapter changes the model ...
    assert torch.allclose(merged, adapted, atol=1e-3)  # ... and the merged weights carry exactly that change
    assert main(["merge", str(cli_adapter), "--out", str(out)]) == 2  # never over an existing model


def test_a_run_whose_checkpoints_are_gone_resumes_from_its_last_small_snapshot(examples, tmp_path):
    config = dict(TINY, save_steps=50, snapshot_steps=2)
    whole = train(examples[:8], tmp_path / "whole", config=LoRAConfig(max_steps=3, **config), progress=False)
    first = train(examples[:8], tmp_path / "cut", config=LoRAConfig(max_steps=3, max_minutes=1e-6, **config),
                  progress=False)
    # stopped by the time limit at step 1, between snapshots: it keeps one there
    assert first["training"]["steps"] == 1 and first["snapshots"] == ["snapshots/step-1"]
    snapshot = tmp_path / "cut" / "snapshots" / "step-1"
    assert read_manifest(snapshot)["training"]["steps"] == 1  # servable and mergeable on its own
    assert sum(p.stat().st_size for p in snapshot.iterdir()) < 12e6  # bf16 adapter, no optimizer state
    import shutil

    shutil.rmtree(tmp_path / "cut" / "checkpoints")  # another machine: only the committed snapshot is left
    second = train(examples[:8], tmp_path / "cut", config=LoRAConfig(max_steps=3, **config), progress=False)
    assert second["training"]["resumed_from"] == "snapshots/step-1" and second["training"]["steps"] == 3
    assert second["training"]["tokens"] == whole["training"]["tokens"] > 0  # the same batches, none twice
    assert second["snapshots"] == ["snapshots/step-1", "snapshots/step-2"]  # the end is the adapter itself
    import torch

    state = json.loads((tmp_path / "cut" / "snapshots" / "step-2" / "trainer_state.json").read_text())
    schedule = torch.load(tmp_path / "cut" / "snapshots" / "step-2" / "scheduler.pt", weights_only=True)
    assert state["global_step"] == 2 and schedule["last_epoch"] == 2  # the schedule carried on, not restarted


def test_learning_curve_scores_dev_rows_never_trained_on_against_training_tokens(data_dir, tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    from reasonflow.finetune import curve
    from reasonflow.finetune.recipe import DEV_ROWS, Recipe, collect_gold, dev_rows, train_rows

    recipe = Recipe(gold=(("pot", 8),), dev_questions=3, data_dir=str(data_dir))
    rows = train_rows(recipe)
    dev = dev_rows(recipe, rows)
    assert [r.id for r in dev] == [r.id for r in rows[-DEV_ROWS:][:3]]
    gold, _ = collect_gold(recipe, rows)
    seen = []
    real = curve.evaluate

    def spy(model, tokenizer, dev_, adapter=None):
        result = real(model, tokenizer, dev_, adapter)
        seen.append(result)
        return result

    monkeypatch.setattr(curve, "evaluate", spy)
    manifest = train(gold, tmp_path, base_model=str(tiny_model_dir), dev=dev, progress=False,
                     config=LoRAConfig(max_steps=2, snapshot_steps=1, **TINY), prompt_format="compact")
    points = manifest["learning_curve"]
    assert [p["step"] for p in points] == [0, 1, 2] and len(seen) == 3  # step 0, each snapshot; the end is step 2
    assert points[0]["tokens"] == 0 < points[1]["tokens"] < points[2]["tokens"] == manifest["training"]["tokens"]
    assert all(p["questions"] == 3 and 0 <= p["accuracy"] <= p["ci95"][1] for p in points)
    assert (tmp_path / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "learning_curve.json").read_text())[-1]["step"] == 2


def test_the_dev_slice_is_never_training_data_even_with_the_whole_gold_set(data_dir):
    from reasonflow.finetune.recipe import DEV_ROWS, Recipe, collect_gold, dev_rows, train_rows

    recipe = Recipe(gold=(("pot", "all"),), dev_questions=DEV_ROWS, data_dir=str(data_dir))
    rows = train_rows(recipe)
    gold, report = collect_gold(recipe, rows)
    dev_ids = {r.id for r in dev_rows(recipe, rows)}
    assert len(dev_ids) == DEV_ROWS and not dev_ids & {ex.id for ex in gold}
    assert report["pot"]["rows"] == len(rows) - DEV_ROWS and len(gold) == report["pot"]["conversion"]["pot:ok"]
    assert len(gold) > 6500  # every PoT conversion of the train split, not a sample
    with pytest.raises(ConfigError, match="dev"):
        Recipe(gold=(("pot", 8),), dev_questions=DEV_ROWS + 1)


def test_read_code_takes_the_json_code_field_and_refuses_anything_else():
    from reasonflow.finetune.curve import read_code

    assert read_code('{"code":"n1 = 2+3; answer = n1"}<|im_end|>') == "n1 = 2+3; answer = n1"
    assert read_code("The answer is 5.") is None and read_code('{"code":""}') is None and read_code('{"code":') is None
