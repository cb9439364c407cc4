"""reasonflow: chain-of-thought, self-consistency and tree search as DSPy programs over vLLM.

    import reasonflow
    lm = reasonflow.configure()          # embedded CPU engine, or configure(base_url=...)
    program = reasonflow.program("gsm8k.cot")
    print(program(question="...").answer)

The public API is ``__all__`` below (pinned by a test): what running programs needs, and the extension
points (``Task``, ``register``, the strategies, ``register_strategy``). Everything else is internal.
"""

import os

# reasonflow talks to local OpenAI-compatible servers: never fetch LiteLLM's price list from the net.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from reasonflow import builtins as _builtins, registry as _registry  # noqa: E402
from reasonflow.adapter import StructuredAdapter  # noqa: E402
from reasonflow.artifact import load, program  # noqa: E402
from reasonflow.config import Budget, EngineConfig, LMConfig  # noqa: E402
from reasonflow.engine import Engine  # noqa: E402
from reasonflow.errors import (  # noqa: E402
    ArtifactError, ConfigError, ContextOverflowError, DatasetError, EngineError, EngineNotRunning,
    EngineStartError, LMError, LMRequestError, LMTimeoutError, ModelFetchError, NoAnswerError, ParseError,
    ReasonflowError, SandboxError, TruncatedError,
)
from reasonflow.lm import VLLMLM, configure, connect, session  # noqa: E402
from reasonflow.options import Options  # noqa: E402
from reasonflow.registry import list_programs, register, register_strategy  # noqa: E402
from reasonflow.remote import remote  # noqa: E402
from reasonflow.result import Result  # noqa: E402
from reasonflow.search import SearchStrategy, Task  # noqa: E402
from reasonflow import strategies as _strategies  # noqa: E402
from reasonflow.strategies import *  # noqa: E402,F403  (every strategy class: ChainOfThought, TreeOfThought, ...)
from reasonflow.trace import Trace  # noqa: E402
from reasonflow.usage import Usage, track_usage  # noqa: E402

_registry.add_source(_builtins.load)  # the built-in programs, loaded on the first lookup or registration

__version__ = "0.1.0"

__all__ = [
    # running programs
    "Budget", "Engine", "EngineConfig", "LMConfig", "StructuredAdapter", "Usage", "VLLMLM", "Result",
    "Trace", "configure", "connect", "list_programs", "load", "program", "remote", "session", "track_usage",
    # extending: a task, a program over it, a strategy of your own
    "Task", "register", "register_strategy", "Options", "SearchStrategy", *_strategies.__all__,
    # errors
    "ReasonflowError", "ConfigError", "EngineError", "ModelFetchError", "EngineStartError", "EngineNotRunning",
    "LMError", "LMTimeoutError", "LMRequestError", "ContextOverflowError", "TruncatedError", "ParseError",
    "NoAnswerError", "DatasetError", "ArtifactError", "SandboxError",
]
