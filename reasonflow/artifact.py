"""Compiled program artifacts: DSPy's JSON state plus a manifest, never a pickle.

    artifact.save(program, "programs/compiled/gsm8k-cot.json", manifest={...})
    program = reasonflow.load("programs/compiled/gsm8k-cot.json")   # from any working directory

The file is one JSON object: ``{"format": "reasonflow.compiled", "version": 1, "manifest": {...},
"state": <program.dump_state()>}``. The manifest names the registered program and its options, so
``load`` rebuilds the module from the registry and then loads the state into it; no code is read from
the file. It also records the model, vLLM version, dataset, split and example ids, metric, dev
scores, tokens, seed, library versions and time (see ``reasonflow.compile``).

Loading restores prompts and demos only: per predictor, the signature's instructions and each field's
prefix and description, and the demos (plain JSON records). Sampling settings (``config``), an LM
(``lm`` other than null), non-empty ``traces``/``train``/``fields`` or any other attribute in the
state are refused with ``ArtifactError``, so a file cannot override the LM or the bounds of the
server that loads it. The manifest's ``options`` (k, breadth, temperature, ...) are bounded like a
request's options (the strategy's ``Options.check_request``; out of bounds: ``ConfigError``).
Every malformed file (not JSON, nested too deeply, no ``program``, a ``version`` that is not the
integer 1, a state that does not fit the program) is an ``ArtifactError``.

Not guaranteed: a state compiled for one version of a program's signatures may not fit a later one;
``load`` then raises ``ArtifactError`` naming the mismatch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dspy

from reasonflow.errors import ArtifactError, ConfigError
from reasonflow.registry import get_program

ARTIFACT_FORMAT = "reasonflow.compiled"
ARTIFACT_VERSION = 1
MAX_ARTIFACT_BYTES = 32 * 1024 * 1024
MAX_ARTIFACT_NESTING = 32  # levels of lists and objects in an artifact; deeper files are refused
MAX_DEMOS = 64  # demos per predictor
_PICKLE_MAGIC = (b"\x80",)  # every pickle protocol >= 2 starts with PROTO (0x80)
# What a predictor's state may hold: prompts and demos. The rest must be absent or empty.
_STATE_KEYS = frozenset({"demos", "signature", "traces", "train", "lm", "fields"})
_EMPTY_KEYS = {"traces": list, "train": list, "fields": dict}  # dump_state writes them; only empty is loaded
_SIGNATURE_KEYS = frozenset({"instructions", "fields"})
_FIELD_KEYS = frozenset({"prefix", "description"})


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
    except RecursionError as exc:
        raise ArtifactError(f"{path} nests JSON too deeply to be a compiled program") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    _check_nesting(path, payload)
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path} is not a reasonflow compiled program (format {ARTIFACT_FORMAT!r})")
    version = payload.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version != ARTIFACT_VERSION:
        raise ArtifactError(f"{path} has artifact version {version!r}; this reasonflow reads "
                            f"version {ARTIFACT_VERSION}")
    manifest = payload.get("manifest")
    if not isinstance(manifest, dict) or not isinstance(payload.get("state"), dict):
        raise ArtifactError(f"{path} lacks a manifest or a state")
    if not isinstance(manifest.get("program"), str) or not manifest["program"]:
        raise ArtifactError(f"{path}: the manifest does not name the registered program it was compiled from")
    if not isinstance(manifest.get("options", {}), dict):
        raise ArtifactError(f"{path}: the manifest's options must be an object")
    return payload


def _check_nesting(path, payload) -> None:
    stack = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        if children and depth > MAX_ARTIFACT_NESTING:
            raise ArtifactError(f"{path} nests lists and objects more than {MAX_ARTIFACT_NESTING} levels deep")
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def prompts_only(state: dict, program: dspy.Module, where: str = "the artifact") -> dict:
    """The state with only prompts and demos, checked against ``program``'s predictors;
    ``ArtifactError`` for anything else (sampling config, an LM, unknown attributes or predictors)."""
    names = {name for name, _ in program.named_predictors()}
    unknown = sorted(set(state) - names)
    if unknown:
        raise ArtifactError(f"{where}: the state names {unknown}, which are not predictors of this program "
                            f"(it has {sorted(names)})")
    clean: dict = {}
    for name, entry in state.items():
        if not isinstance(entry, dict):
            raise ArtifactError(f"{where}: the state of {name!r} is not an object")
        extra = sorted(set(entry) - _STATE_KEYS)
        if extra:
            raise ArtifactError(f"{where}: the state of {name!r} sets {extra}; a compiled program may restore "
                                "prompts and demos only, not sampling settings or other attributes")
        if entry.get("lm") is not None:
            raise ArtifactError(f"{where}: the state of {name!r} carries its own LM; the LM comes from whoever "
                                "loads the program")
        for key, kind in _EMPTY_KEYS.items():
            if key in entry and (not isinstance(entry[key], kind) or entry[key]):
                raise ArtifactError(f"{where}: the state of {name!r} has a non-empty {key!r}; only prompts and "
                                    "demos are loaded")
        signature = entry.get("signature")
        if not isinstance(signature, dict) or set(signature) - _SIGNATURE_KEYS:
            raise ArtifactError(f"{where}: the signature state of {name!r} must hold only instructions and fields")
        if not isinstance(signature.get("instructions", ""), str):
            raise ArtifactError(f"{where}: the instructions of {name!r} are not text")
        fields = signature.get("fields", [])
        if not isinstance(fields, list) or not all(
                isinstance(f, dict) and not set(f) - _FIELD_KEYS and all(isinstance(v, str) for v in f.values())
                for f in fields):
            raise ArtifactError(f"{where}: the fields of {name!r} may hold only a text prefix and description")
        demos = entry.get("demos", [])
        if not isinstance(demos, list) or len(demos) > MAX_DEMOS or not all(
                isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, (str, int, float, bool, type(None)))
                                            for k, v in d.items()) for d in demos):
            raise ArtifactError(f"{where}: the demos of {name!r} must be at most {MAX_DEMOS} objects of plain "
                                "values")
        clean[name] = {"traces": [], "train": [], "demos": demos, "signature": signature, "lm": None}
    return clean


def check_options(program: str, options: dict) -> dict:
    """The manifest's options, bounded like a request's (``ConfigError`` when out of bounds,
    ``ArtifactError`` for an option the program's strategy does not take)."""
    from reasonflow.registry import STRATEGIES, spec

    strategy = spec(program).strategy
    cls = STRATEGIES.get(strategy)
    allowed = set(cls.Options.request_fields()) if cls is not None else set()
    extra = sorted(set(options) - allowed)
    if extra:
        raise ArtifactError(f"the manifest does not fit program {program!r}: it sets options {extra}, and the "
                            f"program (strategy {strategy!r}) takes {sorted(allowed)}")
    if cls is not None:
        try:
            cls.Options.check_request(options)
        except ConfigError as exc:
            raise ConfigError(f"the manifest's {exc}") from exc
    return dict(options)


def load(path: str | os.PathLike) -> dspy.Module:
    """Rebuild the registered program named in the manifest and load the compiled state into it."""
    payload = read(path)
    manifest = payload["manifest"]
    name = manifest["program"]
    if name.endswith(".json"):
        raise ArtifactError(f"{path}: the manifest must name a registered program, not another artifact")
    try:
        options = check_options(name, manifest.get("options", {}))
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: {exc}") from exc
    program = get_program(name, **options)  # ConfigError for an unknown program or bad options
    state = prompts_only(payload["state"], program, str(path))
    try:
        program.load_state(state)
    except Exception as exc:  # DSPy raises KeyError/ValueError/TypeError for a mismatched state
        raise ArtifactError(f"{path}: the state does not fit program {name!r}: {exc}") from exc
    program.manifest = manifest
    return program


def with_options(compiled: dspy.Module, **options) -> dspy.Module:
    """A fresh copy of a loaded artifact with ``options`` over its manifest's: the registered program
    rebuilt with them, then the compiled prompts and demos loaded in (what the server does per request)."""
    manifest = compiled.manifest
    program = get_program(manifest["program"], **{**manifest.get("options", {}), **options})
    program.load_state(compiled.dump_state())
    program.manifest = manifest
    return program


def program(name: str, **options) -> dspy.Module:
    """A registered program by name (``gsm8k.sc@8``, options to its factory), or a compiled artifact by
    path (``programs/compiled/x.json``; options over its manifest's)."""
    if str(name).endswith(".json"):
        compiled = load(name)
        return with_options(compiled, **options) if options else compiled
    return get_program(name, **options)
