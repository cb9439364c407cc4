"""Compiled program artifacts: DSPy's JSON state plus a manifest, never a pickle.

    artifact.save(program, "programs/compiled/gsm8k-cot.json", manifest={...})
    program = reasonflow.load("programs/compiled/gsm8k-cot.json")   # from any working directory

The file is one JSON object: ``{"format": "reasonflow.compiled", "version": 1, "manifest": {...},
"state": <program.dump_state()>}``. The manifest names the registered program and its options, so
``load`` rebuilds the module from the registry and then loads the state (demos, instructions) into it;
no code is read from the file. It also records the model, vLLM version, dataset, split and example
ids, metric, dev scores, tokens, seed, library versions and time (see ``reasonflow.compile``).

Not guaranteed: a state compiled for one version of a program's signatures may not fit a later one;
``load`` then raises ``ArtifactError`` naming the mismatch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dspy

from reasonflow.errors import ArtifactError

ARTIFACT_FORMAT = "reasonflow.compiled"
ARTIFACT_VERSION = 1
MAX_ARTIFACT_BYTES = 32 * 1024 * 1024
_PICKLE_MAGIC = (b"\x80",)  # every pickle protocol >= 2 starts with PROTO (0x80)


def save(program: dspy.Module, path: str | os.PathLike, *, manifest: dict) -> Path:
    """Write ``program``'s state and ``manifest`` (which must name ``program``) atomically."""
    if "program" not in manifest:
        raise ArtifactError("the manifest must name the registered program it was compiled from")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": ARTIFACT_FORMAT, "version": ARTIFACT_VERSION, "manifest": manifest,
               "state": program.dump_state()}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
    tmp.replace(path)
    return path


def read(path: str | os.PathLike) -> dict:
    """The validated JSON payload of an artifact file."""
    path = Path(path).expanduser()
    if path.suffix in (".pkl", ".pickle"):
        raise ArtifactError(f"{path}: pickled programs are refused; compile to JSON with `reasonflow compile`")
    try:
        if path.stat().st_size > MAX_ARTIFACT_BYTES:
            raise ArtifactError(f"{path} is larger than {MAX_ARTIFACT_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from exc
    if raw.startswith(_PICKLE_MAGIC):
        raise ArtifactError(f"{path} is a pickle; reasonflow never unpickles. Use a JSON artifact.")
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path} is not a reasonflow compiled program (format {ARTIFACT_FORMAT!r})")
    if payload.get("version") != ARTIFACT_VERSION:
        raise ArtifactError(f"{path} has artifact version {payload.get('version')!r}; this reasonflow reads "
                            f"version {ARTIFACT_VERSION}")
    if not isinstance(payload.get("manifest"), dict) or not isinstance(payload.get("state"), dict):
        raise ArtifactError(f"{path} lacks a manifest or a state")
    return payload


def load(path: str | os.PathLike) -> dspy.Module:
    """Rebuild the registered program named in the manifest and load the compiled state into it."""
    from reasonflow.registry import get_program

    payload = read(path)
    manifest = payload["manifest"]
    try:
        program = get_program(manifest["program"], **manifest.get("options", {}))
        program.load_state(payload["state"])
    except Exception as exc:  # DSPy raises KeyError/ValueError/TypeError for a mismatched state
        raise ArtifactError(f"{path}: the state does not fit program {manifest['program']!r}: {exc}") from exc
    program.manifest = manifest
    return program
