"""The README's first Python example runs as written (against the session's engine), and the public
API is exactly what ``__all__`` promises."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import reasonflow

README = Path(__file__).resolve().parents[1] / "README.md"

PUBLIC = {
    "ArtifactError", "Budget", "ConfigError", "ContextOverflowError", "DatasetError", "Engine", "EngineConfig",
    "EngineError", "EngineNotRunning", "EngineStartError", "LMConfig", "LMError", "LMRequestError",
    "LMTimeoutError", "ModelFetchError", "ParseError", "ReasonflowError", "SandboxError", "StructuredAdapter",
    "Trace", "TruncatedError", "Usage", "VLLMLM", "configure", "connect", "list_programs", "load", "program",
    "track_usage",
}


def test_public_api_is_pinned():
    assert set(reasonflow.__all__) == PUBLIC
    assert all(hasattr(reasonflow, name) for name in reasonflow.__all__)


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
        build_parser().parse_args(argv)  # argparse exits (SystemExit) on an unknown subcommand or flag
