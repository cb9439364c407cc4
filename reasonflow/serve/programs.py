"""The programs one server serves, and how each request gets its own fresh program object.

``load_programs(["gsm8k.sc@8", "programs/compiled/x.json"])`` resolves every name once at startup
(an unknown name or a bad artifact fails then, not on the first request). A registered name is
served under that name and rebuilt per request with ``get_program(name, **options)``. A compiled
artifact (``.json``) is served under its file stem; per request the loaded module is deep-copied and
the options are set as attributes of the copy. Either way no two requests share a program object, so
one request's options never reach another's.

Not guaranteed: options on a compiled program only work where the module has the matching attribute
(``k``, ``temperature``, ``breadth``, ``max_depth``...); anything else is refused with a 422.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dspy

from reasonflow.config import Budget
from reasonflow.errors import ConfigError
from reasonflow.registry import get_program, spec
from reasonflow.serve.schemas import OPTION_ATTRS, SolveOptions, check_options

# LM settings (applied through dspy.context) and the server's deadline: not the program's
PROGRAM_OPTIONS_EXCLUDED = ("max_tokens", "deadline_s")
CODE_STRATEGIES = frozenset({"pot", "bpot"})  # strategies that run model-written code in reasonflow.sandbox


@dataclass
class ServedProgram:
    """One entry of ``GET /v1/models``."""

    id: str
    source: str  # the registered name or the artifact path
    strategy: str | None
    description: str = ""
    compiled: dspy.Module | None = field(default=None, repr=False)  # the loaded artifact, never run itself

    @property
    def runs_code(self) -> bool:
        """Whether the program runs model-written code (and so needs the sandbox)."""
        return self.strategy in CODE_STRATEGIES

    def problems(self, options: SolveOptions) -> list[str]:
        """Why ``options`` cannot be used with this program (empty when they can)."""
        problems = check_options(self.id, self.strategy, options)
        if not problems and self.compiled is not None:
            for name in _program_options(options):
                if name != "budget" and not hasattr(self.compiled, OPTION_ATTRS.get(name, name)):
                    problems.append(f"compiled program {self.id!r} has no setting {name!r}")
        return problems

    def build(self, options: SolveOptions) -> dspy.Module:
        """A fresh program for one request. Raises ConfigError/TypeError/ValueError on bad options."""
        given = _program_options(options)
        if "budget" in given:
            given["budget"] = _budget(given["budget"], getattr(self.compiled, "budget", Budget()))
        if self.compiled is None:
            return get_program(self.source, **given)
        program = copy.deepcopy(self.compiled)
        for name, value in given.items():
            setattr(program, OPTION_ATTRS.get(name, name), value)
        return program


def _program_options(options: SolveOptions) -> dict[str, Any]:
    return {k: v for k, v in options.given().items() if k not in PROGRAM_OPTIONS_EXCLUDED}


def _budget(given: dict, base: Any) -> Budget:
    """The request's budget fields over the program's own budget (library defaults if it has none)."""
    return replace(base if isinstance(base, Budget) else Budget(), **given)


def load_programs(names: list[str] | tuple[str, ...]) -> dict[str, ServedProgram]:
    """Resolve each name (registered program or compiled ``.json``) once; ids must be unique."""
    if not names:
        raise ConfigError("serve needs at least one program (a registered name or a compiled .json)")
    served: dict[str, ServedProgram] = {}
    for name in names:
        entry = _load_one(str(name))
        if entry.id in served:
            raise ConfigError(f"two served programs would both be called {entry.id!r}; serve each once")
        served[entry.id] = entry
    return served


def _load_one(name: str) -> ServedProgram:
    if name.endswith(".json"):
        module = get_program(name)
        strategy = getattr(module, "name", None)
        return ServedProgram(id=Path(name).stem, source=name, strategy=strategy if isinstance(strategy, str) else None,
                             description=f"compiled from {Path(name).name}", compiled=module)
    program_spec = spec(name)  # ConfigError for an unknown name or a bad @N
    get_program(name)  # build once, so a broken factory fails at startup
    return ServedProgram(id=name, source=name, strategy=program_spec.strategy, description=program_spec.description)
