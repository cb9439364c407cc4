"""The detached engine that ``reasonflow engine up`` leaves running, shared across processes.

A JSON state file (``$REASONFLOW_HOME/engine.json``) records the server's pid, URL, model and log.
``up()`` reuses a live, ready engine instead of starting a second one, under a file lock so two
concurrent ``up`` calls still start one server. ``status()`` reads the file and checks the server;
``down()`` stops it and removes the file. ``shared_engine()`` is what ``reasonflow.lm.connect()`` uses
when no base URL is given: the detached engine if one is up, else one owned by this process: stopped
at exit, and by its lifeline watchdog when the process ends any other way (a signal, SIGKILL), so it
never outlives its owner (see ``reasonflow.engine.server``).

Not guaranteed: a state file from another machine or user is trusted as far as its pid and port.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from reasonflow.config import DEFAULT_ENGINE_STOP_GRACE_S, EngineConfig, home_dir
from reasonflow.engine.server import Engine, is_ready, pid_alive, stop_process_group
from reasonflow.errors import EngineNotRunning


@dataclass(frozen=True)
class EngineState:
    pid: int
    base_url: str
    model: str
    served_model: str
    log_path: str
    started_at: float
    lora: tuple[str, ...] = ()

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def ready(self) -> bool:
        return self.alive() and is_ready(self.base_url, self.served_model)


def state_path() -> Path:
    return home_dir() / "engine.json"


def read_state() -> EngineState | None:
    try:
        data = json.loads(state_path().read_text())
        data["lora"] = tuple(data.get("lora", ()))
        return EngineState(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write_state(state: EngineState) -> None:
    path = state_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(path)


def _locked():
    home_dir().mkdir(parents=True, exist_ok=True)
    fh = open(home_dir() / "engine.lock", "w")
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def up(config: EngineConfig | None = None) -> tuple[EngineState, bool]:
    """Start a detached engine, or reuse the running one. Returns (state, started_now)."""
    config = config or EngineConfig()
    with _locked():
        state = read_state()
        if state is not None and state.ready():
            return state, False
        if state is not None and state.alive():
            stop_process_group(state.pid, DEFAULT_ENGINE_STOP_GRACE_S)
        engine = Engine(config=config, owned=False).start()  # detached: it outlives this command
        state = EngineState(pid=engine.pid, base_url=engine.base_url, model=config.model,
                            served_model=engine.served_model, log_path=str(engine.log_path),
                            started_at=time.time(), lora=tuple(name for name, _ in config.lora))
        _write_state(state)
        return state, True


def status() -> EngineState:
    """The running engine's state; ``EngineNotRunning`` when there is none or it does not answer."""
    state = read_state()
    if state is None:
        raise EngineNotRunning("no engine is up; start one with `reasonflow engine up`")
    if not state.ready():
        raise EngineNotRunning(f"the engine recorded in {state_path()} (pid {state.pid}) is not answering; "
                               f"see {state.log_path} or run `reasonflow engine up` again")
    return state


def down(grace_s: float = DEFAULT_ENGINE_STOP_GRACE_S) -> EngineState | None:
    """Stop the detached engine, if any. Returns the state it had."""
    with _locked():
        state = read_state()
        if state is not None and state.alive():
            stop_process_group(state.pid, grace_s)
        state_path().unlink(missing_ok=True)
        return state


_shared: Engine | EngineState | None = None
_shared_lock = threading.Lock()


def shared_engine() -> Engine | EngineState:
    """The detached engine if it is up, else an engine owned by this process (stopped at exit)."""
    global _shared
    with _shared_lock:
        if isinstance(_shared, Engine) and _shared.alive():
            return _shared
        state = read_state()
        if state is not None and state.ready():
            _shared = state
            return state
        engine = Engine().start()
        atexit.register(engine.stop)
        _shared = engine
        return engine
