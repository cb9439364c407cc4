"""Strategy options: one frozen dataclass per strategy whose annotations carry every choice and range.

    @dataclass(frozen=True)
    class ToTOptions(StepOptions):
        breadth: Breadth = 5                          # Annotated[int, Ge(1), Limit(DEFAULT_MAX_BREADTH)]
        mode: Literal["bfs", "beam"] = "bfs"

    ToTOptions(breadth=0)          # ConfigError: breadth must be >= 1
    ToTOptions.request_fields()    # {"breadth": Annotated[int, Ge(1), Le(32)], "mode": Literal[...], ...}

What a field's annotation says is checked in ``__post_init__`` (``ConfigError``): a ``Literal``'s
choices, ``Ge``/``Gt``/``Le`` bounds, and int/float/bool/str types (a bool is not an int). ``Limit(n)``
is the most a *request* may ask for (the server, a compiled artifact's manifest); Python callers may pass
more. ``Local`` marks a field no request may set at all (a signature, sandbox limits); a ``Callable`` in
a union (an evaluator function) is likewise Python-only. ``request_fields()`` is what the server turns
into its request schema, so a strategy declares its options once and the CLI, the server, artifacts and
the registry all read them from here.

Not guaranteed: only the annotation forms above are checked; anything else (a ``type[...]``, a class) is
passed through for the strategy itself to check.
"""

from __future__ import annotations

import collections.abc
import functools
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal, Union

from annotated_types import Ge, Gt, Le

from reasonflow.config import DEFAULT_MAX_BREADTH, DEFAULT_MAX_N, DEFAULT_MAX_SEARCH_DEPTH
from reasonflow.errors import ConfigError


@dataclass(frozen=True)
class Limit:
    """The largest value a request may ask for (Python callers may pass more)."""

    le: float


class Local:
    """Marks an option that only Python code may set: no request, manifest or ``-o`` can."""


Samples = Annotated[int, Ge(1), Le(DEFAULT_MAX_N)]  # completions of one request: k, n, proposals
Count = Annotated[int, Ge(1), Limit(DEFAULT_MAX_BREADTH)]  # breadth, iterations, rounds
Depth = Annotated[int, Ge(1), Limit(DEFAULT_MAX_SEARCH_DEPTH)]
Temperature = Annotated[float, Ge(0.0), Le(2.0)]
Seed = Annotated[int, Ge(0), Le(2**31 - 1)]
Share = Annotated[float, Ge(0.0), Le(1.0)]


def _parts(annotation) -> tuple[Any, list]:
    """(base type, constraint markers) of an ``Annotated`` annotation, or (annotation, [])."""
    if typing.get_origin(annotation) is Annotated:
        base, *extras = typing.get_args(annotation)
        return base, extras
    return annotation, []


def _is_callable_type(tp) -> bool:
    return tp is collections.abc.Callable or typing.get_origin(tp) is collections.abc.Callable


def _choices(tp) -> list:
    """The members of a union (``Optional`` included), or [tp]."""
    return list(typing.get_args(tp)) if typing.get_origin(tp) in (Union, types.UnionType) else [tp]


def _fits(value, tp) -> bool:
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if typing.get_origin(tp) is Literal:
        return any(value == c and type(value) is type(c) for c in typing.get_args(tp))
    if _is_callable_type(tp):
        return callable(value) and not isinstance(value, (str, type))
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True  # a form this module does not check (type[...], generics): the strategy checks it


def _describe(tp) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    if _is_callable_type(tp):
        return "a callable"
    return "None" if tp is type(None) else f"a {getattr(tp, '__name__', tp)}"


def _problem(value, annotation, request: bool) -> str | None:
    """What ``value`` must be to fit ``annotation`` (None when it fits); a type problem starts with "a"
    or "one of", a range problem with a comparison."""
    base, extras = _parts(annotation)
    if request and any(e is Local or isinstance(e, Local) for e in extras):
        return "set from Python only, not by a request"
    members = _choices(base)
    if len(members) > 1:
        if request:
            members = [m for m in members if not _is_callable_type(m)]
        reasons = [_problem(value, m, request) for m in members]
        if all(reasons):  # a member of the right type but out of range says so; else list the types
            in_type = [r for r, m in zip(reasons, members) if _fits(value, _parts(m)[0])]
            return in_type[0] if in_type else " or ".join(reasons)
    elif not _fits(value, base):
        return _describe(base)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    for e in extras:
        if isinstance(e, Ge) and value < e.ge:
            return f">= {e.ge}"
        if isinstance(e, Gt) and value <= e.gt:
            return f"> {e.gt}"
        if isinstance(e, Le) and value > e.le:
            return f"<= {e.le}"
        if request and isinstance(e, Limit) and value > e.le:
            return f"<= {e.le:g} in a request"
    return None


def check_value(name: str, value, annotation, *, request: bool = False) -> None:
    """``ConfigError`` unless ``value`` fits ``annotation`` (with ``request``: also its ``Limit``, and
    no ``Local`` field or callable)."""
    problem = _problem(value, annotation, request)
    if problem:
        raise ConfigError(f"{name} must be {problem}, got {value!r}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """A class's field annotations, resolved once (every build of a program checks against them)."""
    return typing.get_type_hints(cls, include_extras=True)


@dataclass(frozen=True)
class Options:
    """Base of every strategy's options. Subclasses are frozen dataclasses with annotated fields."""

    def __post_init__(self):
        hints = _hints(type(self))
        for f in fields(self):
            check_value(f.name, getattr(self, f.name), hints[f.name])

    @classmethod
    def build(cls, **values) -> "Options":
        """``cls(**values)``, with an unknown name as ``ConfigError`` naming the ones it takes."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown}; this strategy takes {sorted(cls.names())}")
        return cls(**values)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def request_fields(cls) -> dict[str, Any]:
        """What a request may set: each field's annotation, its ``Limit`` folded into ``Le``, with
        ``Local`` fields and ``Callable`` union members left out."""
        hints = _hints(cls)
        out = {}
        for f in fields(cls):
            base, extras = _parts(hints[f.name])
            if any(isinstance(e, Local) or e is Local for e in extras):
                continue
            members = [m for m in _choices(base) if not _is_callable_type(m) and m is not type(None)]
            if not members:
                continue
            bounds = [Le(e.le) if isinstance(e, Limit) else e for e in extras if isinstance(e, (Ge, Gt, Le, Limit))]
            tp = members[0] if len(members) == 1 else Union[tuple(members)]
            out[f.name] = Annotated[(tp, *bounds)] if bounds else tp
        return out

    @classmethod
    def describe(cls) -> dict[str, str]:
        """Each field's type and range in words (``reasonflow programs`` prints them):
        ``{"breadth": "int, >= 1, a request <= 32", "mode": "'bfs' | 'beam'", ...}``."""
        hints = _hints(cls)
        return {f.name: _words(hints[f.name]) for f in fields(cls)}

    @classmethod
    def check_request(cls, values: dict) -> dict:
        """``values`` checked as a request's (names, types, ranges and limits); ``ConfigError`` if not."""
        hints = _hints(cls)
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown}; this strategy takes {sorted(cls.request_fields())}")
        for name, value in values.items():
            check_value(name, value, hints[name], request=True)
        return dict(values)


def _words(annotation) -> str:
    """An annotation in words: ``int, >= 1, a request <= 32``; ``float, >= 0.0 | None``."""
    base, extras = _parts(annotation)
    members = _choices(base)
    if len(members) > 1:
        text = " | ".join(_words(m) for m in members)
    elif typing.get_origin(base) is Literal:
        text = " | ".join(repr(c) for c in typing.get_args(base))
    elif _is_callable_type(base):
        text = "a callable"
    else:
        text = "None" if base is type(None) else getattr(base, "__name__", str(base))
    for e in extras:
        if isinstance(e, (Ge, Gt, Le)):
            op, attr = {Ge: (">=", "ge"), Gt: (">", "gt"), Le: ("<=", "le")}[type(e)]
            text += f", {op} {getattr(e, attr)}"
        elif isinstance(e, Limit):
            text += f", a request <= {e.le:g}"
        elif e is Local or isinstance(e, Local):
            text += ", Python only"
    return text


def parse_pairs(pairs, flag: str = "-o") -> dict[str, Any]:
    """``["k=8", "temperature=0.5", "mode=beam"]`` -> {"k": 8, "temperature": 0.5, "mode": "beam"}:
    each value read as JSON, else kept as a string (the CLI's ``-o KEY=VALUE``)."""
    import json

    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} takes KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


__all__ = ["Count", "Depth", "Limit", "Local", "Options", "Samples", "Seed", "Share", "Temperature", "check_value",
           "parse_pairs"]
