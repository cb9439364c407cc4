"""The README's first Python example runs as written (against the session's engine), and the public
API is exactly what ``__all__`` promises."""

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import reasonflow

README = Path(__file__).resolve().parents[1] / "README.md"

PUBLIC = {
    "ArtifactError", "Budget", "ConfigError", "ContextOverflowError", "DatasetError", "Engine", "EngineConfig",
    "EngineError", "EngineNotRunning", "EngineStartError", "LMConfig", "LMError", "LMRequestError",
    "LMTimeoutError", "ModelFetchError", "NoAnswerError", "ParseError", "ReasonflowError", "SandboxError",
    "StructuredAdapter", "Trace", "TruncatedError", "Usage", "VLLMLM", "configure", "connect", "list_programs",
    "load", "program", "remote", "session", "track_usage", "Result",
    # extension points
    "Task", "register", "register_strategy", "Options", "SearchStrategy",
}


def test_public_api_is_pinned():
    """``__all__`` is the pinned set plus one class per registered strategy, and (as httpx checks) every
    public name the package defines is in it: nothing public by accident, nothing promised and missing."""
    from reasonflow.registry import STRATEGIES

    strategies = {cls.__name__ for cls in STRATEGIES.values()}
    assert set(reasonflow.__all__) == PUBLIC | strategies
    assert len(reasonflow.__all__) == len(set(reasonflow.__all__))
    defined = {name for name, value in vars(reasonflow).items()
               if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert defined == set(reasonflow.__all__)


def test_readme_example_is_six_lines():
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 6


@pytest.mark.engine
def test_readme_python_example_runs(engine, tmp_path):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "REASONFLOW_BASE_URL": engine.base_url}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), "the example printed nothing"


def test_readme_cli_commands_parse():
    """Every ``reasonflow ...`` command in the README's shell blocks names real subcommands and flags."""
    import shlex

    from reasonflow.bench.cli import build_merge_parser
    from reasonflow.cli import build_parser

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("#")[0].split("&&"):
                words = shlex.split(part)
                if words[:1] == ["reasonflow"]:
                    commands.append(words[1:])
    assert len(commands) >= 8 and any(c[0] == "merge" for c in commands)
    for argv in commands:
        if argv[:2] == ["bench", "merge"]:  # reasonflow.cli.main routes it to the merge parser
            build_merge_parser().parse_args(argv[2:])
            continue
        build_parser().parse_args(argv)  # argparse exits (SystemExit) on an unknown subcommand or flag
