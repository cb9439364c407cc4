"""reasonflow's task programs: GSM8K, Game of 24 and MATH, each registered by name in
``reasonflow.registry`` (``gsm8k.cot``, ``game24.tot``, ``math.sc``, ...). ``compiled/`` holds
compiled artifacts (JSON state + manifest)."""

from . import game24, gsm8k, math  # noqa: F401  (registration happens on import; relative: the package
#                                    installs as reasonflow_programs, see pyproject.toml)
