"""The embedded vLLM engine: model fetch and conversion, server launch and health, detached state.

See ``reasonflow.engine.server.Engine`` for the Python API and ``reasonflow engine up|status|down``
for the command line (``--replicas N``: N servers on this machine, one share of the cores each).
"""

from reasonflow.engine.model import MODELS, ensure_model, resolve_model
from reasonflow.engine.server import Engine, is_ready
from reasonflow.engine.state import (EngineState, ReplicaState, cpu_shares, down, read_state, shared_engine,
                                     status, up)

__all__ = ["MODELS", "Engine", "EngineState", "ReplicaState", "cpu_shares", "down", "ensure_model", "is_ready",
           "read_state", "resolve_model", "shared_engine", "status", "up"]
