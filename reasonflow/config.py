"""Frozen configuration objects and the named limits every other module uses.

Every bound in reasonflow lives here as a ``DEFAULT_*`` constant with a safe value, so that nothing is
unbounded: wall time, retries, nodes, depth, samples, tokens, request bodies. Configs are frozen
dataclasses that validate in ``__post_init__`` and raise ``ConfigError``. They do not read the
environment; ``home_dir()`` is the one exception, for ``REASONFLOW_HOME``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reasonflow.errors import ConfigError

# --- engine -----------------------------------------------------------------------------------
DEFAULT_MODEL = "smollm2-135m"
DEFAULT_ENGINE_HOST = "127.0.0.1"
DEFAULT_OMP_THREADS = 2
DEFAULT_KVCACHE_GIB = 2
DEFAULT_MAX_MODEL_LEN = 4096
DEFAULT_ENGINE_START_TIMEOUT_S = 900.0  # a cold start compiles for ~90 s; a loaded machine is slower
DEFAULT_ENGINE_STOP_GRACE_S = 20.0
# vLLM's structured-output backends; the default is the one evals/guided_decoding.py measured cheapest
# at a 100% parse rate on these cores. The first two can forbid whitespace inside the JSON.
GUIDED_BACKENDS = ("xgrammar", "guidance", "outlines", "lm-format-enforcer")
COMPACT_JSON_BACKENDS = ("xgrammar", "guidance")
DEFAULT_GUIDED_BACKEND = "xgrammar"
DEFAULT_LOG_TAIL_LINES = 40

# --- LM calls ---------------------------------------------------------------------------------
DEFAULT_REQUEST_TIMEOUT_S = 300.0  # one HTTP request, including queueing inside vLLM
DEFAULT_MAX_RETRIES = 3  # for 408/409/429/5xx and connection errors; 400/401 are never retried
DEFAULT_MAX_TOKENS = 384
DEFAULT_MAX_N = 64  # completions per request
DEFAULT_REASONING_MAX_CHARS = 400  # bound on free-text output fields, so the JSON always closes
DEFAULT_HISTORY_LIMIT = 200  # call records a usage collector keeps (its totals count every call)
MAX_REPLICAS = 64  # endpoints behind one LM (reasonflow.replicas), and `engine up --replicas` on one machine
DEFAULT_REPLICA_BACKOFF_S = 30.0  # a replica that refused a connection or timed out is not tried for this long

# --- search -----------------------------------------------------------------------------------
DEFAULT_MAX_NODES = 200
DEFAULT_MAX_DEPTH = 8
DEFAULT_MAX_LM_CALLS = 200
DEFAULT_DEADLINE_S = 600.0
DEFAULT_CONCURRENCY = 32  # concurrent requests one search or bench keeps in flight
DEFAULT_MAX_BREADTH = 32  # the most a request may ask for: ToT breadth, MCTS iterations, refine rounds
DEFAULT_MAX_SEARCH_DEPTH = 16  # the most search depth a request may ask for


def home_dir() -> Path:
    """Where reasonflow keeps its model cache, engine state and logs (``REASONFLOW_HOME``)."""
    return Path(os.environ.get("REASONFLOW_HOME") or Path.home() / ".cache" / "reasonflow")


def _positive(name: str, value: float) -> None:
    if value is None or value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class EngineConfig:
    """How the embedded vLLM server is launched.

    ``model`` is a registered model name (``smollm2-135m``) or a local Hugging Face model directory.
    ``lora`` maps adapter names to adapter directories, served with ``--enable-lora``.
    """

    model: str = DEFAULT_MODEL
    host: str = DEFAULT_ENGINE_HOST
    port: int | None = None  # None: pick a free port
    omp_threads: int = DEFAULT_OMP_THREADS
    kvcache_gib: int = DEFAULT_KVCACHE_GIB
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    start_timeout_s: float = DEFAULT_ENGINE_START_TIMEOUT_S
    stop_grace_s: float = DEFAULT_ENGINE_STOP_GRACE_S
    lora: tuple[tuple[str, str], ...] = ()
    max_lora_rank: int = 16
    # float32: CPUs without AVX512-BF16 emulate bfloat16 slowly (vLLM would otherwise downcast).
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    guided_backend: str = DEFAULT_GUIDED_BACKEND  # one of GUIDED_BACKENDS
    # False: vLLM runs the model eagerly (-O0). On these CPU cores torch.compile adds ~10 s to every
    # warm start and no throughput (evals/engine_start.py, evals/engine_throughput.py, each with and
    # without `-- -O0`). True: vLLM's default compilation (on a GPU: CUDA graphs); `-- -O3` also works.
    compile: bool = False
    extra_args: tuple[str, ...] = ()  # passed to vLLM as they are (`engine up -- --data-parallel-size 2`)
    cpus: tuple[int, ...] = ()  # CPU ids the server is bound to (affinity and vLLM's OMP binding); () = any

    def __post_init__(self):
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        object.__setattr__(self, "cpus", tuple(self.cpus))
        if any(not isinstance(c, int) or c < 0 for c in self.cpus):
            raise ConfigError(f"cpus are CPU ids (ints >= 0), got {self.cpus!r}")
        for name in ("omp_threads", "kvcache_gib", "max_model_len", "start_timeout_s", "stop_grace_s"):
            _positive(name, getattr(self, name))
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigError(f"port must be in 1..65535, got {self.port}")
        if self.guided_backend not in GUIDED_BACKENDS:
            raise ConfigError(f"guided_backend must be one of {GUIDED_BACKENDS}, got {self.guided_backend!r}")
        if isinstance(self.lora, dict):
            object.__setattr__(self, "lora", tuple(sorted(self.lora.items())))
        for item in self.lora:
            if len(item) != 2 or not item[0] or not item[1]:
                raise ConfigError(f"lora entries are NAME=DIR pairs, got {item!r}")


@dataclass(frozen=True)
class LMConfig:
    """Bounds for calls to an OpenAI-compatible endpoint."""

    timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    max_n: int = DEFAULT_MAX_N
    # Sequences in flight through one LM object at once (a request with n=k counts k); async calls
    # past it wait their turn. None: no limit (the server queues). Keeps a known concurrency cap.
    max_sequences: int | None = None  # with several replicas: per replica
    # Under max_sequences, an n=k call goes as k one-sample requests, each through the gate on its own
    # (one request holds its k slots until its longest sample ends); False: one request of n=k.
    split_samples: bool = True
    replica_backoff_s: float = DEFAULT_REPLICA_BACKOFF_S

    def __post_init__(self):
        _positive("timeout_s", self.timeout_s)
        _positive("replica_backoff_s", self.replica_backoff_s)
        _positive("max_n", self.max_n)
        if self.max_sequences is not None:
            _positive("max_sequences", self.max_sequences)
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")


@dataclass(frozen=True)
class Budget:
    """Bounds on one search. When one runs out the search returns its best answer so far and the
    trace is marked ``budget_exhausted``."""

    max_nodes: int = DEFAULT_MAX_NODES
    max_depth: int = DEFAULT_MAX_DEPTH
    max_lm_calls: int = DEFAULT_MAX_LM_CALLS
    deadline_s: float = DEFAULT_DEADLINE_S

    def __post_init__(self):
        for name in ("max_nodes", "max_depth", "max_lm_calls", "deadline_s"):
            _positive(name, getattr(self, name))
