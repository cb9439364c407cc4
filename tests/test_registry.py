"""The registry and the strategies' facts: one place, read by every caller, with the built-in programs
always present and options a strategy declares accepted wherever it runs."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

import reasonflow
from reasonflow import registry
from reasonflow.errors import ArtifactError, ConfigError
from reasonflow.registry import STRATEGIES, get_program, list_programs, parse_name, register
from reasonflow.search import Task
from reasonflow.serve import create_app
from reasonflow.serve.schemas import SolveOptions, allowed_options
from reasonflow.serve.testing import serving
from reasonflow.strategies import ChainOfThought
from reasonflow.testing import ScriptedLM

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_programs():
    saved = dict(registry.PROGRAMS)
    yield
    registry.PROGRAMS.clear()
    registry.PROGRAMS.update(saved)


def test_builtin_programs_survive_a_user_registering_first():
    """Regression: the registry loaded the built-ins only while it was empty, so one user program
    registered before the first lookup hid them all. Run in a fresh interpreter, where nothing is loaded."""
    code = ("from reasonflow import Task, register, program, list_programs\n"
            "from reasonflow.strategies import ChainOfThought\n"
            "register('mine.cot', kind='number')(lambda **o: ChainOfThought(Task('mine'), **o))\n"
            "print(program('gsm8k.cot').task.name, program('mine.cot').task.name, len(list_programs()))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    gsm8k, mine, count = done.stdout.split()
    assert (gsm8k, mine) == ("gsm8k", "mine") and int(count) == len(list_programs()) + 1


def test_a_user_program_may_replace_a_builtin_of_the_same_name(restore_programs):
    register("gsm8k.cot", kind="number", description="mine")(lambda **o: ChainOfThought(Task("mine"), **o))
    assert get_program("gsm8k.cot").task.name == "mine"


def test_game24_tot_takes_depth():
    """Regression (issue 14): ``program("game24.tot", depth=4)`` raised TypeError (multiple values for depth)."""
    program = reasonflow.program("game24.tot", depth=4)
    assert program.depth == 4 and program.max_depth == 4 and program.breadth == 5


@pytest.mark.parametrize("spec", list_programs(), ids=lambda s: s.name)
def test_every_option_a_request_may_set_builds_the_program(spec):
    """Whatever the server accepts for a program's strategy, the program's factory takes (no TypeError)."""
    cls = STRATEGIES[spec.strategy]
    defaults = {f.name: f.default for f in dataclasses.fields(cls.Options)}
    for name in cls.Options.request_fields():
        built = get_program(spec.name, **{name: defaults[name]})
        assert getattr(built, name) == defaults[name]


def test_pot_and_every_strategy_have_request_options_from_their_own_dataclass():
    """Regression: ``pot`` had no entry in the server's hand-kept option table."""
    assert {"cot", "sc", "bon", "tot", "dfs", "mcts", "pot"} <= set(STRATEGIES)
    for name, cls in STRATEGIES.items():
        assert allowed_options(name) - {"budget", "max_tokens", "deadline_s"} == set(cls.Options.request_fields())
        assert set(cls.Options.request_fields()) <= set(SolveOptions.model_fields)
    assert allowed_options("pot") >= {"k", "temperature"}
    assert not allowed_options("pot") & {"timeout_s", "memory_mb", "cpu_s", "signature"}  # sandbox limits: Python only


def test_size_option_and_policy_come_from_the_strategy():
    assert parse_name("game24.tot@7:exact") == ("game24.tot", {"breadth": 7, "policy": "exact"})
    assert parse_name("gsm8k.pot@4") == ("gsm8k.pot", {"k": 4})
    with pytest.raises(ConfigError, match="takes no :POLICY"):
        parse_name("gsm8k.sc:random")
    with pytest.raises(ConfigError, match="@N"):
        parse_name("gsm8k.cot@3")


def test_unknown_or_out_of_range_options_are_config_errors_not_type_errors():
    with pytest.raises(ConfigError, match="unknown option"):
        get_program("gsm8k.sc", breadth=3)
    with pytest.raises(ConfigError, match="breadth must be >= 1"):
        get_program("game24.tot", breadth=0)
    with pytest.raises(ConfigError, match="<= 32 in a request"):
        STRATEGIES["tot"].Options.check_request({"breadth": 33})
    assert get_program("game24.tot", breadth=33).breadth == 33  # Python callers are not held to request limits


def test_policy_and_value_scoring_are_request_options():
    """Regression: the tree searches took ``policy``/``value_scoring`` but the server refused them with 422."""
    lm = ScriptedLM(lambda call: pytest.fail("the random policy makes no LM call"))
    with serving(create_app(["game24.tot"], lm=lm)) as url:
        done = httpx.post(f"{url}/v1/solve", timeout=30, json={
            "question": "4 9 10 13", "options": {"policy": "random", "value_scoring": "verdict", "seed": 3}})
        bad = httpx.post(f"{url}/v1/solve", timeout=30, json={"question": "4 9 10 13", "options": {"policy": "best"}})
    assert done.status_code == 200, done.text
    assert done.json()["trace"]["graph"]["config"]["policy"] == "random"
    assert bad.status_code == 422 and lm.calls == []


def test_a_manifest_is_bounded_by_the_strategys_request_limits(tmp_path):
    from reasonflow import artifact

    with pytest.raises(ConfigError, match="breadth must be <= 32"):
        artifact.check_options("game24.tot", {"breadth": 99})
    with pytest.raises(ArtifactError, match="timeout_s"):
        artifact.check_options("gsm8k.pot", {"timeout_s": 1e9})


def test_compile_grids_and_size_options_are_the_strategies_own():
    for cls in STRATEGIES.values():
        names = {f.name for f in dataclasses.fields(cls.Options)}
        assert cls.size_option is None or cls.size_option in names
        assert all(set(point) <= names for point in cls.grid)


def test_registry_imports_nothing_above_it():
    source = (ROOT / "reasonflow" / "registry.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert [line for line in imports if "reasonflow" in line] == ["from reasonflow.errors import ConfigError"]
    assert "import_module" not in source and "artifact" not in "\n".join(imports)


def test_the_wheel_lists_every_package_and_installs_programs_under_its_own_name():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "reasonflow").rglob("__init__.py")}
    assert set(config["packages"]) == found | {"reasonflow_programs"}
    assert config["package-dir"] == {"reasonflow_programs": "programs"}
    assert "programs" not in config["packages"]


def test_cli_run_uses_a_session_and_reports_bad_options_as_one_line(monkeypatch, tmp_path, capsys):
    from reasonflow import cli, lm

    scripted = ScriptedLM(lambda call: {"reasoning": "2+2", "answer": 4})
    monkeypatch.setattr(lm, "connect", lambda base_url=None, model=None, **kw: scripted)
    assert cli.main(["run", "gsm8k.cot", "--question", "2+2?", "--trace-out", str(tmp_path)]) == 0
    assert "answer: 4" in capsys.readouterr().out and (tmp_path / "trace.json").is_file()
    assert cli.main(["run", "gsm8k.cot", "--question", "q", "-o", "breadth=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unknown option" in err and "Traceback" not in err
