"""The one registry of strategies and named programs, shared by the CLI, the bench, the compiler and the server.

    from reasonflow.registry import get_program, list_programs
    program = get_program("gsm8k.sc@4")

**Names.** A program name is ``TASK.STRATEGY`` (``gsm8k.cot``, ``game24.tot``): a *task* is a problem
family (``reasonflow.search.Task``; its name is the prefix), a *strategy* a search over it. The *kind* is
the checker family that scores the program's answers (``number``, ``latex``, ``game24``). ``@N`` sets the
strategy's ``size_option`` (``gsm8k.sc@8``: k=8; ToT: breadth; BestOfN: n). ``:POLICY`` sets the
strategy's ``policy`` option, for the strategies that have one (``game24.tot:random``,
``game24.tot@10:exact``; see ``reasonflow.search.actions``).

**Strategies** register with ``@register_strategy`` on their class, which carries the facts every caller reads:
``name``, ``Options`` (a frozen dataclass, ``reasonflow.options``: what a caller or a request may set,
with ranges), ``size_option`` and ``grid`` (the knob settings ``reasonflow.compile`` tries).

**Programs** register with ``@register("TASK.STRATEGY", kind=...)`` on a factory. The built-in ones
(``programs/``) load on the first lookup or registration, through a source the top-level package adds
(``add_source``), so they are there whatever a user registers first. Compiled artifacts (``.json``) are
``reasonflow.artifact``'s business (``reasonflow.program`` takes both).

This module is the bottom layer: it imports nothing of reasonflow but ``errors``.
Not guaranteed: registering a name twice replaces the first entry (the last registration wins).
"""

from __future__ import annotations

import threading
import typing
from dataclasses import dataclass, fields
from typing import Any, Callable

from reasonflow.errors import ConfigError

STRATEGIES: dict[str, type] = {}  # name -> strategy class (see ``strategy``)


def register_strategy(cls: type) -> type:
    """Class decorator: register a strategy under ``cls.name``, after checking that its facts agree
    (``Options`` is a dataclass; ``size_option`` and every ``grid`` key are among its fields)."""
    options = getattr(cls, "Options", None)
    names = {f.name for f in fields(options)} if options is not None and hasattr(options, "__dataclass_fields__") else None
    if not isinstance(getattr(cls, "name", None), str) or names is None:
        raise ConfigError(f"{cls.__name__} needs a string `name` and an `Options` dataclass to be a strategy")
    if cls.size_option is not None and cls.size_option not in names:
        raise ConfigError(f"{cls.__name__}.size_option {cls.size_option!r} is not one of its options {sorted(names)}")
    bad = sorted({key for point in cls.grid for key in point} - names)
    if bad:
        raise ConfigError(f"{cls.__name__}.grid sets {bad}, which are not among its options {sorted(names)}")
    STRATEGIES[cls.name] = cls
    return cls


def policies(strategy_name: str) -> tuple[str, ...]:
    """The ``:POLICY`` choices a strategy takes (the Literal of its ``policy`` option), or ()."""
    cls = STRATEGIES.get(strategy_name)
    if cls is None or "policy" not in cls.Options.__dataclass_fields__:
        return ()
    hint = typing.get_type_hints(cls.Options, include_extras=True)["policy"]
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return tuple(typing.get_args(hint))


@dataclass(frozen=True)
class ProgramSpec:
    name: str
    kind: str  # the checker family that scores it: number | latex | game24
    strategy: str
    factory: Callable[..., Any]
    description: str = ""


PROGRAMS: dict[str, ProgramSpec] = {}
_sources: list[Callable[[], Any]] = []  # loaders of built-in programs, added by the package above
_loaded: set[int] = set()
_lock = threading.RLock()


def add_source(loader: Callable[[], Any]) -> None:
    """Add a loader that registers programs (``reasonflow`` adds its built-in ``programs``); it runs
    once, before the first lookup or registration."""
    _sources.append(loader)


def _load_sources() -> None:
    with _lock:
        for loader in list(_sources):
            if id(loader) not in _loaded:
                _loaded.add(id(loader))  # first: a loader's own programs register while it runs
                try:
                    loader()
                except BaseException:
                    _loaded.discard(id(loader))  # a failed load is tried again, not silently skipped
                    raise


def register(name: str, *, kind: str, description: str = "", strategy: str | None = None):
    """Decorator: register ``factory(**options) -> dspy.Module`` under ``name`` (TASK.STRATEGY).
    ``strategy``: the registered strategy it builds, when the name's part differs (``gsm8k.bpot``
    is a ``pot``); its ``@N``, options and server rules are that strategy's."""
    task, _, strategy_name = name.partition(".")
    if not task or not strategy_name:
        raise ConfigError(f"program names are TASK.STRATEGY, got {name!r}")
    strategy_name = strategy or strategy_name
    _load_sources()  # built-ins first, so a user's program of the same name replaces them, not vice versa

    def decorate(factory):
        PROGRAMS[name] = ProgramSpec(name, kind, strategy_name, factory, description or (factory.__doc__ or "").strip())
        return factory

    return decorate


def parse_name(name: str) -> tuple[str, dict]:
    """``gsm8k.sc@8`` -> (``gsm8k.sc``, {"k": 8}); ``game24.tot@10:random`` -> (``game24.tot``,
    {"breadth": 10, "policy": "random"})."""
    _load_sources()  # the strategies the built-in programs use are registered by then
    rest, _, policy = name.partition(":")
    base, _, size = rest.partition("@")
    strategy_name = PROGRAMS[base].strategy if base in PROGRAMS else base.partition(".")[2]
    cls = STRATEGIES.get(strategy_name)
    options: dict = {}
    if policy:
        choices = policies(strategy_name)
        if policy not in choices:
            takes = sorted(s for s in STRATEGIES if policies(s))
            raise ConfigError(f"{name!r}: :POLICY must be one of {choices}" if choices else
                              f"{name!r}: strategy {strategy_name!r} takes no :POLICY (these do: {takes})")
        options["policy"] = policy
    if size:
        sized = sorted(s for s, c in STRATEGIES.items() if c.size_option)
        if cls is None or cls.size_option is None or not size.isdigit() or int(size) < 1:
            raise ConfigError(f"{name!r}: @N needs a positive integer and a strategy in {sized}")
        options[cls.size_option] = int(size)
    return base, options


def spec(name: str) -> ProgramSpec:
    _load_sources()
    base, _ = parse_name(name)
    if base not in PROGRAMS:
        raise ConfigError(f"unknown program {name!r}; known: {', '.join(sorted(PROGRAMS))}")
    return PROGRAMS[base]


def get_program(name: str, **options):
    """Build a registered program; ``@N``, ``:POLICY`` and ``options`` go to its factory. Options the
    program does not take are a ``ConfigError``, never a ``TypeError``."""
    if name.endswith(".json"):
        raise ConfigError(f"{name!r} is a compiled artifact; load it with reasonflow.program or reasonflow.load")
    base, sized = parse_name(name)
    found = spec(base)
    try:
        program = found.factory(**{**sized, **options})
    except TypeError as exc:  # a factory's own signature refused an option
        raise ConfigError(f"program {base!r} does not take these options: {exc}") from exc
    program.program_name = name
    return program


def list_programs() -> list[ProgramSpec]:
    _load_sources()
    return [PROGRAMS[k] for k in sorted(PROGRAMS)]
