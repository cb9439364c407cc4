"""The built-in task programs (the repository's ``programs/`` directory) and how they load.

    from reasonflow import builtins
    builtins.module("game24").numbers_left      # a helper of one built-in task program

An installed reasonflow carries ``programs/`` as the package ``reasonflow_programs`` (see the
``package-dir`` note in ``pyproject.toml``), so it never shadows, or is shadowed by, a user's own
``programs``; a source checkout imports the directory as it stands. ``reasonflow`` hands ``load`` to the
registry (``registry.add_source``), which calls it once before the first lookup or registration.

Not guaranteed: in a source checkout run from elsewhere, ``programs`` is whatever that name imports.
"""

from __future__ import annotations

import importlib
from types import ModuleType

PACKAGES = ("reasonflow_programs", "programs")  # installed wheel, then a source checkout


def load() -> ModuleType:
    """Import the built-in programs package (its modules register their programs on import)."""
    for name in PACKAGES:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the package is there but something it imports is not
                raise
    raise ModuleNotFoundError(f"none of {PACKAGES} is importable: the built-in programs are missing")


def module(name: str) -> ModuleType:
    """One built-in program module (``game24``, ``gsm8k``, ``math``)."""
    return importlib.import_module(f"{load().__name__}.{name}")
