"""The ``reasonflow`` command line behaves like its neighbours': -o on run/bench/serve, --api-key on the
client commands, ``programs``, ``--version`` and ``engine up -- VLLM_ARGS`` (offline: no engine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import reasonflow
from reasonflow import cli, registry
from reasonflow.config import EngineConfig
from reasonflow.engine import server
from reasonflow.testing import ScriptedLM


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"reasonflow {reasonflow.__version__}"


def test_programs_lists_every_registered_program_with_its_options_and_defaults(capsys):
    assert cli.main(["programs", "--json"]) == 0
    listing = {item["name"]: item for item in json.loads(capsys.readouterr().out)}
    assert set(listing) == {spec.name for spec in registry.list_programs()}
    tot = listing["game24.tot"]
    assert tot["strategy"] == "tot" and tot["size_option"] == "breadth" and "random" in tot["policies"]
    built = registry.get_program("game24.tot")
    for name, option in tot["options"].items():  # the factory's defaults, not the dataclass's
        assert option["default"] == getattr(built.options, name) or callable(getattr(built.options, name))
    assert tot["options"]["mode"]["type"] == "'bfs' | 'beam'"
    assert tot["options"]["breadth"]["type"].startswith("int, >= 1")
    assert listing["gsm8k.sc"]["options"]["k"]["default"] == 8


def test_programs_text_marks_python_only_options_without_a_flag(capsys):
    assert cli.main(["programs"]) == 0
    out = capsys.readouterr().out
    assert "gsm8k.sc  [sc, checked as number]  (@N sets k)" in out
    assert "    -o k=8  (int, >= 1, <= 64)" in out
    assert "    memory_mb=256  (int, Python only)" in out and "-o memory_mb" not in out


def test_run_takes_options_and_an_api_key(tmp_path, monkeypatch, capsys):
    lm = ScriptedLM(lambda call: {"reasoning": "r", "answer": 4.0})
    seen = {}

    def connect(base_url=None, model=None, **kw):
        seen.update(base_url=base_url, **kw)
        return lm

    monkeypatch.setattr("reasonflow.lm.connect", connect)
    code = cli.main(["run", "gsm8k.sc@2", "--question", "2+2?", "-o", "temperature=0.25", "--api-key", "sk-x",
                     "--base-url", "http://h/v1", "--trace-out", str(tmp_path)])
    assert code == 0 and "answer: 4" in capsys.readouterr().out
    assert seen == {"base_url": "http://h/v1", "api_key": "sk-x"}
    assert {c.kwargs.get("temperature") for c in lm.calls} == {0.25}
    assert json.loads((tmp_path / "trace.json").read_text())["graph"]["config"]["temperature"] == 0.25


def test_a_bad_option_is_a_one_line_error(capsys):
    assert cli.main(["run", "gsm8k.cot", "--question", "q", "-o", "breadth"]) == 2
    assert "-o takes KEY=VALUE" in capsys.readouterr().err


def test_compile_passes_its_api_key(monkeypatch):
    seen = {}
    monkeypatch.setattr("reasonflow.compile.compile_program",
                        lambda *a, **kw: seen.update(kw) or (_ for _ in ()).throw(reasonflow.ConfigError("stop")))
    assert cli.main(["compile", "gsm8k.cot", "--out", "x.json", "--api-key", "sk-y"]) == 2
    assert seen["api_key"] == "sk-y"


def test_engine_up_passes_everything_after_the_double_dash_to_vllm(monkeypatch, capsys):
    seen = {}

    class State:
        served_model, base_url = "m", "http://127.0.0.1:1/v1"

        def members(self):
            return []

    def up(config, replicas=1):
        seen["config"] = config
        return State(), True

    monkeypatch.setattr("reasonflow.engine.up", up)
    assert cli.main(["engine", "up", "--port", "8123", "--", "--max-num-seqs", "8", "--port-ignored", "x"]) == 0
    config = seen["config"]
    assert config.port == 8123 and config.extra_args == ("--max-num-seqs", "8", "--port-ignored", "x")
    engine = server.Engine(config=EngineConfig(extra_args=config.extra_args))
    engine.model_dir, engine.served_model, engine.port = Path("/m"), "m", 8123
    assert engine.command()[-4:] == ["--max-num-seqs", "8", "--port-ignored", "x"]


def test_serve_option_presets_defaults_that_requests_still_override(monkeypatch):
    from reasonflow.serve import cli as serve_cli

    calls = {}
    monkeypatch.setattr(serve_cli, "serve", lambda programs, **kw: calls.update(programs=programs, **kw))
    saved = dict(registry.PROGRAMS)
    try:
        assert cli.main(["serve", "gsm8k.sc@4", "gsm8k.cot", "-o", "temperature=0.3"]) == 0
        assert calls["programs"] == ["gsm8k.sc@4", "gsm8k.cot"]
        assert registry.get_program("gsm8k.sc@4").options.temperature == 0.3
        assert registry.get_program("gsm8k.sc@4").options.k == 4  # the name's @N is kept
        assert registry.get_program("gsm8k.sc@4", temperature=0.9).options.temperature == 0.9  # a request's own
        assert registry.get_program("gsm8k.cot").options.temperature == 0.3
        assert "gsm8k.tot" in registry.PROGRAMS and registry.get_program("gsm8k.tot").options.temperature == 0.7
    finally:
        registry.PROGRAMS.clear()
        registry.PROGRAMS.update(saved)


def test_serve_option_a_program_does_not_take_fails_at_start(monkeypatch, capsys):
    from reasonflow.serve import cli as serve_cli
    from reasonflow.serve.app import create_app

    saved = dict(registry.PROGRAMS)
    monkeypatch.setattr(serve_cli, "serve", lambda programs, **kw: create_app(programs, lm=ScriptedLM([])))
    try:
        assert cli.main(["serve", "gsm8k.sc@4", "-o", "breadth=3"]) == 2
        assert "breadth" in capsys.readouterr().err
    finally:
        registry.PROGRAMS.clear()
        registry.PROGRAMS.update(saved)


def test_the_console_entry_point_answers_version():
    done = subprocess.run([sys.executable, "-m", "reasonflow.cli", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"reasonflow {reasonflow.__version__}"
