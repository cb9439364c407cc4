"""The one registry of named programs, shared by the CLI, the bench, the compiler and the server.

A program name is ``TASK.STRATEGY`` (``gsm8k.cot``, ``game24.tot``). ``@N`` sets the strategy's main
size knob (``gsm8k.sc@8`` is self-consistency with k=8; for ToT it is the breadth, for BestOfN n).
``:POLICY`` runs a tree search with a baseline policy instead of the model (``game24.tot:random``,
``game24.tot@10:exact``; see ``reasonflow.search.actions``).
Task programs register themselves from the ``programs`` package (``programs/*.py``), which is
imported on first lookup. ``get_program("path/to/compiled.json")`` loads a compiled artifact instead.

    from reasonflow.registry import get_program, list_programs
    program = get_program("gsm8k.sc@4")
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import dspy

from reasonflow.errors import ConfigError

# The option that ``@N`` sets, by strategy.
SIZE_OPTION = {"sc": "k", "bon": "n", "tot": "breadth", "mcts": "iterations", "dfs": "proposals", "pot": "k", "bpot": "k"}


@dataclass(frozen=True)
class ProgramSpec:
    name: str
    task: str  # dataset family whose checker scores it: number | latex | game24
    strategy: str
    factory: Callable[..., dspy.Module]
    description: str = ""


PROGRAMS: dict[str, ProgramSpec] = {}


def register(name: str, *, kind: str, description: str = ""):
    """Decorator: register ``factory(**options) -> dspy.Module`` under ``name`` (TASK.STRATEGY)."""
    task, _, strategy = name.partition(".")
    if not task or not strategy:
        raise ConfigError(f"program names are TASK.STRATEGY, got {name!r}")

    def decorate(factory):
        PROGRAMS[name] = ProgramSpec(name, kind, strategy, factory, description or (factory.__doc__ or "").strip())
        return factory

    return decorate


def _load_task_programs() -> None:
    if not PROGRAMS:
        importlib.import_module("programs")


TREE_SEARCHES = ("tot", "dfs", "mcts")  # the strategies that take a ``:POLICY``


def parse_name(name: str) -> tuple[str, dict]:
    """``gsm8k.sc@8`` -> (``gsm8k.sc``, {"k": 8}); ``game24.tot@10:random`` -> (``game24.tot``,
    {"breadth": 10, "policy": "random"})."""
    from reasonflow.search.actions import POLICIES

    rest, _, policy = name.partition(":")
    base, _, size = rest.partition("@")
    strategy = base.partition(".")[2]
    options: dict = {}
    if policy:
        if strategy not in TREE_SEARCHES or policy not in POLICIES:
            raise ConfigError(f"{name!r}: :POLICY needs a policy in {POLICIES} and a strategy in {TREE_SEARCHES}")
        options["policy"] = policy
    if size:
        if strategy not in SIZE_OPTION or not size.isdigit() or int(size) < 1:
            raise ConfigError(f"{name!r}: @N needs a positive integer and a strategy in {sorted(SIZE_OPTION)}")
        options[SIZE_OPTION[strategy]] = int(size)
    return base, options


def spec(name: str) -> ProgramSpec:
    _load_task_programs()
    base, _ = parse_name(name)
    if base not in PROGRAMS:
        raise ConfigError(f"unknown program {name!r}; known: {', '.join(sorted(PROGRAMS))}")
    return PROGRAMS[base]


def get_program(name: str, **options) -> dspy.Module:
    """Build a registered program (``@N`` and ``options`` go to its factory), or load a compiled one."""
    if name.endswith(".json"):
        from reasonflow.artifact import load

        return load(name)
    base, sized = parse_name(name)
    program = spec(base).factory(**{**sized, **options})
    program.program_name = name
    return program


def list_programs() -> list[ProgramSpec]:
    _load_task_programs()
    return [PROGRAMS[k] for k in sorted(PROGRAMS)]
