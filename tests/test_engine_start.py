"""evals/engine_start.py's offline parts: milestones read off a log as it grows, phases between them."""

import importlib.util
import sys
import threading
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location("engine_start", Path(__file__).parents[1] / "evals" / "engine_start.py")
engine_start = importlib.util.module_from_spec(_spec)
sys.modules["engine_start"] = engine_start
_spec.loader.exec_module(engine_start)

LOG = [
    (2.0, "INFO 12-01 06:00:02 [api_server.py:1] vLLM API server version 0.32.0\n"),
    (4.0, "INFO [core.py:1] Initializing a V1 LLM engine (v0.32.0) with config: ...\n"),
    (9.0, "INFO [cpu_model_runner.py:1] Starting to load model /models/smollm2...\n"),
    (11.5, "INFO [default_loader.py:1] Loading weights took 1.20 seconds\n"),
    (30.0, "INFO [monitor.py:1] torch.compile takes 15.31 s in total\n"),
    (36.0, "INFO [core.py:1] init engine (profile, create kv cache, warmup model) took 24.10 seconds\n"),
]


def test_phases_run_from_milestone_to_milestone_in_the_order_they_happened():
    rows = engine_start.milestones(list(reversed(LOG)), ready_s=40.0)
    assert [r["milestone"] for r in rows] == ["api process imported", "engine process started",
                                              "worker loading the model", "model loaded", "compiled",
                                              "warmed up", "ready (first token)"]
    assert [r["phase_s"] for r in rows] == [2.0, 2.0, 5.0, 2.5, 18.5, 6.0, 4.0]
    assert sum(r["phase_s"] for r in rows) == 40.0


def test_milestones_the_log_never_shows_are_named_and_their_time_goes_to_the_next_phase():
    rows = engine_start.milestones(LOG[:2] + LOG[4:], ready_s=40.0)
    assert rows[2] == {"milestone": "compiled", "at_s": 30.0, "phase_s": 26.0}
    assert engine_start._not_seen(LOG[:2] + LOG[4:]) == ["worker loading the model", "model loaded", "api server up"]
    assert engine_start.self_reported(LOG)[0].endswith("Loading weights took 1.20 seconds")


def test_the_follower_stamps_lines_as_the_log_grows(tmp_path):
    path = tmp_path / "engine.log"
    follower = engine_start.LogFollower(path, time.perf_counter())
    follower.start()

    def write():
        with open(path, "w") as f:
            f.write(LOG[0][1])
            f.flush()
            time.sleep(0.3)
            f.write(LOG[1][1])

    writer = threading.Thread(target=write)
    writer.start()
    writer.join()
    time.sleep(0.2)
    follower.done.set()
    follower.join(5)
    assert [line for _, line in follower.lines] == [LOG[0][1], LOG[1][1]]
    assert follower.lines[1][0] > follower.lines[0][0]


def test_the_structured_output_backend_is_an_engine_setting_and_a_bad_one_is_refused(monkeypatch):
    import json as json_

    import pytest

    from reasonflow.config import GUIDED_BACKENDS, EngineConfig
    from reasonflow.engine.server import Engine
    from reasonflow.errors import ConfigError

    def flag(backend):
        engine = Engine(config=EngineConfig(guided_backend=backend))
        engine.model_dir, engine.served_model, engine.port = Path("/m"), "m", 8123
        cmd = engine.command()
        return json_.loads(cmd[cmd.index("--structured-outputs-config") + 1])

    assert flag("xgrammar") == {"backend": "xgrammar", "disable_any_whitespace": True}  # the default's compact JSON
    assert flag("outlines") == {"backend": "outlines"}  # vLLM refuses the whitespace flag for outlines
    assert {flag(b)["backend"] for b in GUIDED_BACKENDS} == set(GUIDED_BACKENDS)
    with pytest.raises(ConfigError, match="guided_backend"):
        EngineConfig(guided_backend="regex-magic")


def test_the_engine_runs_eagerly_unless_asked_to_compile_and_a_later_flag_wins():
    from reasonflow.config import EngineConfig
    from reasonflow.engine.server import Engine

    def command(**kw):
        engine = Engine(config=EngineConfig(**kw))
        engine.model_dir, engine.served_model, engine.port = Path("/m"), "m", 8123
        return engine.command()

    assert command()[-1] == "-O0"  # no torch.compile: ~10 s less warm start, the same tok/s here
    assert "-O0" not in command(compile=True)
    assert command(extra_args=("-O3",))[-2:] == ["-O0", "-O3"]  # vLLM reads the last -O
