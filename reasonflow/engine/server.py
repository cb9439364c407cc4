"""Launch, health-check and stop a vLLM OpenAI-compatible server as a child process.

``Engine(model=...)`` resolves the model (``reasonflow.engine.model``), starts
``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1 with a free port, sends its output to a
log file, and waits until ``/health`` answers and a 1-token completion succeeds. If the process dies
or the wait runs out, ``EngineStartError`` quotes the log's tail. ``stop()`` sends SIGTERM to the
server's process group, then SIGKILL after a grace period.

An engine never outlives the process that started it (``owned=True``, the default): beside it runs a
small watchdog (``reasonflow/engine/_watchdog.py``) holding the read end of a lifeline pipe whose write
end only this process holds. When this process ends, however it ends (a clean exit, an exception,
SIGTERM or SIGINT that skip ``atexit``, as uvicorn's re-raised SIGTERM does, or SIGKILL), the kernel
closes the pipe and the watchdog stops the engine's process group. ``reasonflow engine up`` starts
its detached engine with ``owned=False``: that one is meant to outlive the command.

    with reasonflow.Engine() as eng:
        print(eng.base_url)

Not guaranteed: the server runs with the privileges of the caller and listens on loopback without
authentication; a cold start compiles kernels for a minute or more (later starts reuse vLLM's cache).
``EngineConfig(cpus=(0, 1))`` binds the server to those cores (its process affinity, which its
children inherit, and vLLM-CPU's ``VLLM_CPU_OMP_THREADS_BIND``) with one OpenMP thread per core; that
is how ``reasonflow engine up --replicas N`` gives each replica its share. A binding is set right
after the server process starts, while it is still starting Python (before vLLM starts its threads).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx

from reasonflow.config import COMPACT_JSON_BACKENDS, DEFAULT_LOG_TAIL_LINES, EngineConfig, home_dir
from reasonflow.engine.model import resolve_model
from reasonflow.errors import ConfigError, EngineStartError

POLL_INTERVAL_S = 1.0
WATCHDOG_SCRIPT = Path(__file__).with_name("_watchdog.py")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_tail(path: Path | str | None, lines: int = DEFAULT_LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except (OSError, TypeError):
        return ""


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); ask waitpid without blocking.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def is_ready(base_url: str, model: str | None = None, timeout_s: float = 30.0, api_key: str | None = None) -> bool:
    """``/health`` answers 200 and a 1-token completion succeeds. For replicas ("u1,u2"): at least one
    of them is ready (the LM fails over to it)."""
    if "," in base_url:
        return any(is_ready(url, model, timeout_s, api_key) for url in base_url.split(",") if url.strip())
    root = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key and api_key != "EMPTY" else {}
    try:
        if httpx.get(f"{root}/health", timeout=5.0).status_code != 200:
            return False
        if model is None:
            model = httpx.get(f"{root}/v1/models", timeout=5.0, headers=headers).json()["data"][0]["id"]
        body = {"model": model, "prompt": "1", "max_tokens": 1, "temperature": 0}
        return httpx.post(f"{root}/v1/completions", json=body, timeout=timeout_s, headers=headers).status_code == 200
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return False


def structured_outputs_config(backend: str) -> dict:
    """vLLM's ``--structured-outputs-config`` for ``backend``. Compact JSON where the backend can force
    it: a small model otherwise pads with whitespace until max_tokens and the JSON never closes."""
    return {"backend": backend, **({"disable_any_whitespace": True} if backend in COMPACT_JSON_BACKENDS else {})}


class Engine:
    """An embedded vLLM server. Use as a context manager, or call ``start()`` and ``stop()``."""

    def __init__(self, model: str | None = None, *, lora: dict[str, str] | None = None,
                 config: EngineConfig | None = None, owned: bool = True, **overrides):
        config = config or EngineConfig()
        if model is not None:
            overrides["model"] = model
        if lora:
            overrides["lora"] = tuple(sorted(lora.items()))
        self.config = replace(config, **overrides) if overrides else config
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None
        self.port: int | None = None
        self.served_model: str | None = None
        self.model_dir: Path | None = None
        self.log_path: Path | None = None
        self.owned = owned
        self.watchdog: subprocess.Popen | None = None
        self._lifeline: int | None = None  # the write end of the watchdog's pipe, held only here

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise EngineStartError("the engine has not been started")
        return f"http://{self.config.host}:{self.port}/v1"

    def command(self) -> list[str]:
        cfg = self.config
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
               "--model", str(self.model_dir), "--served-model-name", self.served_model,
               "--host", cfg.host, "--port", str(self.port), "--max-model-len", str(cfg.max_model_len),
               "--dtype", cfg.dtype, "--enable-prompt-tokens-details", "--enable-prefix-caching",
               "--structured-outputs-config", json.dumps(structured_outputs_config(cfg.guided_backend))]
        if cfg.lora:
            modules = [f"{name}={Path(path).resolve()}" for name, path in cfg.lora]
            cmd += ["--enable-lora", "--max-lora-rank", str(cfg.max_lora_rank), "--lora-modules", *modules]
        if not cfg.compile:
            cmd.append("-O0")  # eager; a later -O in extra_args wins (vLLM reads the last one)
        return cmd + list(cfg.extra_args)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        cpus = self.config.cpus
        if cpus:  # vLLM-CPU binds its OpenMP threads to these cores, one thread per core
            env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cpus))
        env.update(OMP_NUM_THREADS=str(len(cpus) if cpus else self.config.omp_threads),
                   VLLM_CPU_KVCACHE_SPACE=str(self.config.kvcache_gib),
                   # vLLM-CPU otherwise keeps one core for itself and computes on the rest.
                   VLLM_CPU_NUM_OF_RESERVED_CPU=env.get("VLLM_CPU_NUM_OF_RESERVED_CPU", "0"),
                   VLLM_LOGGING_LEVEL=env.get("VLLM_LOGGING_LEVEL", "INFO"),
                   # vLLM-CPU 0.32 cannot load its own AOT compile artifacts ("no attribute
                   # 'finalize_loading'") and recompiles every start; the inductor cache path does load.
                   VLLM_USE_AOT_COMPILE=env.get("VLLM_USE_AOT_COMPILE", "0"))
        return env

    def start(self) -> "Engine":
        """Launch the server and block until it is ready (bounded by ``start_timeout_s``)."""
        self.launch()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> "Engine":
        """Start the server process (and its watchdog when owned) without waiting for it: several
        engines can then warm up at once before ``wait_ready``."""
        self.model_dir, self.served_model = resolve_model(self.config.model)
        for name, path in self.config.lora:
            if not (Path(path) / "adapter_config.json").is_file():
                raise ConfigError(f"LoRA adapter {name!r}: {path} has no adapter_config.json (a PEFT adapter directory)")
        self.port = self.config.port or free_port(self.config.host)
        logs = home_dir() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"engine-{self.port}.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.environment(),
                                            start_new_session=True)
        self.pid = self.process.pid
        try:
            if self.config.cpus:
                os.sched_setaffinity(self.pid, self.config.cpus)
            if self.owned:
                self._start_watchdog()
        except OSError as exc:
            self.stop()
            raise EngineStartError(f"could not bind the server to cpus {list(self.config.cpus)}: {exc}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if not pid_alive(self.pid):
                raise EngineStartError(f"the vLLM server (pid {self.pid}) exited before it was ready",
                                       log_tail(self.log_path), str(self.log_path))
            if is_ready(self.base_url, self.served_model):
                return
            time.sleep(POLL_INTERVAL_S)
        raise EngineStartError(f"the vLLM server was not ready within {self.config.start_timeout_s:.0f}s",
                               log_tail(self.log_path), str(self.log_path))

    def _start_watchdog(self) -> None:
        """The lifeline: a watchdog that stops the engine's group when this process is gone."""
        read_end, write_end = os.pipe()  # both close-on-exec: no other child inherits the write end
        try:
            self.watchdog = subprocess.Popen(
                [sys.executable, "-I", "-S", str(WATCHDOG_SCRIPT), str(self.pid), str(self.config.stop_grace_s)],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
                start_new_session=True)
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self._lifeline = write_end

    def stop(self) -> None:
        """SIGTERM the server's process group; SIGKILL it after ``stop_grace_s``."""
        if not self.pid:
            return
        stop_process_group(self.pid, self.config.stop_grace_s, self.process)
        self.process = None
        if self._lifeline is not None:  # the watchdog sees EOF, finds the group empty and exits
            os.close(self._lifeline)
            self._lifeline = None
        if self.watchdog is not None:
            try:
                self.watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()
            self.watchdog = None

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def __enter__(self) -> "Engine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self.port else "not started"
        return f"Engine(model={self.config.model!r}, {where}, pid={self.pid})"


def stop_process_group(pid: int, grace_s: float, process: subprocess.Popen | None = None) -> None:
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and pid_alive(pid):
            if process is not None and process.poll() is not None:
                break
            time.sleep(0.2)
        if not pid_alive(pid):
            break
    if process is not None:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
