"""The detached engine that ``reasonflow engine up`` leaves running, shared across processes.

A JSON state file (``$REASONFLOW_HOME/engine.json``) records the server's pid, URL, model and log.
``up()`` reuses a live, ready engine instead of starting a second one, under a file lock so two
concurrent ``up`` calls still start one server. ``status()`` reads the file and checks the server;
``down()`` stops it and removes the file. ``shared_engine()`` is what ``reasonflow.lm.connect()`` uses
when no base URL is given: the detached engine if one is up, else one owned by this process: stopped
at exit, and by its lifeline watchdog when the process ends any other way (a signal, SIGKILL), so it
never outlives its owner (see ``reasonflow.engine.server``).

``up(config, replicas=N)`` starts N servers of the same model on this machine, each bound to its own
share of the cores (``cpu_shares``: contiguous, as even as the count allows), all warming up at once.
The state then lists every replica, and its ``base_url`` is theirs comma-separated: what
``connect()`` and ``REASONFLOW_BASE_URL`` take for one LM over all of them. ``down()`` stops them all.
Extra vLLM arguments (``EngineConfig.extra_args``) go to every replica.

Not guaranteed: a state file from another machine or user is trusted as far as its pid and port;
N replicas on N cores share memory bandwidth, so they need not be N times as fast as one.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import threading
import time
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from reasonflow.config import DEFAULT_ENGINE_STOP_GRACE_S, MAX_REPLICAS, EngineConfig, home_dir
from reasonflow.engine.server import Engine, is_ready, pid_alive, stop_process_group
from reasonflow.errors import ConfigError, EngineNotRunning


@dataclass(frozen=True)
class ReplicaState:
    """One server of a detached engine: its process, URL, log and the cores it is bound to."""

    pid: int
    base_url: str
    log_path: str
    cpus: tuple[int, ...] = ()

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def ready(self, served_model: str | None = None) -> bool:
        return self.alive() and is_ready(self.base_url, served_model)


@dataclass(frozen=True)
class EngineState:
    pid: int  # the first replica's
    base_url: str  # every replica's URL, comma-separated
    model: str
    served_model: str
    log_path: str  # the first replica's
    started_at: float
    lora: tuple[str, ...] = ()
    replicas: tuple[ReplicaState, ...] = ()  # () in a state file from before replicas: the one above

    def members(self) -> tuple[ReplicaState, ...]:
        return self.replicas or (ReplicaState(self.pid, self.base_url, self.log_path),)

    def alive(self) -> bool:
        """Any replica's process is alive."""
        return any(m.alive() for m in self.members())

    def ready(self) -> bool:
        """Every replica answers."""
        return all(m.ready(self.served_model) for m in self.members())


def state_path() -> Path:
    return home_dir() / "engine.json"


def read_state() -> EngineState | None:
    try:
        data = json.loads(state_path().read_text())
        data["lora"] = tuple(data.get("lora", ()))
        data["replicas"] = tuple(ReplicaState(**{**m, "cpus": tuple(m.get("cpus", ()))})
                                 for m in data.get("replicas", ()))
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


def cpu_shares(replicas: int) -> list[tuple[int, ...]]:
    """This process's usable cores split into ``replicas`` contiguous shares, as even as the count
    allows (the first shares get the extra core). More replicas than cores is a ``ConfigError``."""
    cores = sorted(os.sched_getaffinity(0))
    if not 1 <= replicas <= min(len(cores), MAX_REPLICAS):
        raise ConfigError(f"replicas must be in 1..{min(len(cores), MAX_REPLICAS)} (one core each at least; "
                          f"{len(cores)} usable here, MAX_REPLICAS={MAX_REPLICAS}), got {replicas}")
    size, extra = divmod(len(cores), replicas)
    shares, start = [], 0
    for i in range(replicas):
        end = start + size + (i < extra)
        shares.append(tuple(cores[start:end]))
        start = end
    return shares


def up(config: EngineConfig | None = None, replicas: int = 1) -> tuple[EngineState, bool]:
    """Start a detached engine of ``replicas`` servers, or reuse the running one. Returns (state,
    started_now). One replica runs as configured (``config.cpus`` and ``omp_threads``); several are
    each bound to a share of the cores (``cpu_shares``), on ports ``config.port + i`` if a port is set."""
    config = config or EngineConfig()
    shares = cpu_shares(replicas) if replicas != 1 else [config.cpus]
    with _locked():
        state = read_state()
        if state is not None and state.ready():
            if len(state.members()) != replicas:
                raise ConfigError(f"an engine with {len(state.members())} replica(s) is up ({state.base_url}); "
                                  f"run `reasonflow engine down` before starting {replicas}")
            return state, False
        if state is not None:
            for member in state.members():
                if member.alive():
                    stop_process_group(member.pid, DEFAULT_ENGINE_STOP_GRACE_S)
        engines = []
        try:  # all replicas warm up at once; if one fails, none is left running
            for i, cpus in enumerate(shares):
                port = config.port + i if config.port else None
                engines.append(Engine(config=replace(config, port=port, cpus=cpus), owned=False).launch())
            for engine in engines:
                engine.wait_ready()
        except BaseException:
            for engine in engines:
                engine.stop()
            raise
        members = tuple(ReplicaState(e.pid, e.base_url, str(e.log_path), e.config.cpus) for e in engines)
        first = engines[0]
        state = EngineState(pid=first.pid, base_url=",".join(m.base_url for m in members), model=config.model,
                            served_model=first.served_model, log_path=str(first.log_path),
                            started_at=time.time(), lora=tuple(name for name, _ in config.lora),
                            replicas=members)
        _write_state(state)
        return state, True


def status() -> EngineState:
    """The running engine's state; ``EngineNotRunning`` when there is none or no replica answers
    (``ReplicaState.ready`` tells which replicas of a partly answering engine are down)."""
    state = read_state()
    if state is None:
        raise EngineNotRunning("no engine is up; start one with `reasonflow engine up`")
    if not any(m.ready(state.served_model) for m in state.members()):
        raise EngineNotRunning(f"the engine recorded in {state_path()} (pid {state.pid}) is not answering; "
                               f"see {state.log_path} or run `reasonflow engine up` again")
    return state


def down(grace_s: float = DEFAULT_ENGINE_STOP_GRACE_S) -> EngineState | None:
    """Stop the detached engine (every replica), if any. Returns the state it had."""
    with _locked():
        state = read_state()
        if state is not None:
            for member in state.members():
                if member.alive():
                    stop_process_group(member.pid, grace_s)
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
