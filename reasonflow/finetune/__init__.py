"""Fine-tuning: gold solutions and correct search traces to a LoRA adapter the engine serves.

    from reasonflow.finetune import Recipe, finetune
    manifest = finetune("programs/adapters/gsm8k-pot", Recipe())   # the default recipe, CPU

``data`` converts and renders examples (prompts identical to inference), ``train`` runs PEFT/TRL
LoRA into an adapter directory with a manifest, ``recipe`` ties them together with the search
(rejection sampling) source and round 2 of expert iteration. ``augment`` adds number-perturbed
variants of gold programs, ``curve`` scores the adapter being trained on the train split's dev slice
(the learning curve). ``merge`` folds an adapter into the base weights for full-speed serving on CPU.
"""

from reasonflow.finetune.data import FORMATS, SFTExample, gold_examples, render, search_examples
from reasonflow.finetune.merge import merge
from reasonflow.finetune.recipe import Recipe, finetune
from reasonflow.finetune.train import LoRAConfig, read_manifest, train

__all__ = ["FORMATS", "LoRAConfig", "Recipe", "SFTExample", "finetune", "gold_examples", "merge", "read_manifest",
           "render", "search_examples", "train"]
