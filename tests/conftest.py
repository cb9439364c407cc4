"""Shared fixtures. ``engine``-marked tests share ONE real vLLM engine per session, started through
the CLI (``reasonflow engine up``) in a private REASONFLOW_HOME whose model cache links to the user's,
so the converted model is built at most once per machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reasonflow.config import home_dir

REPO = Path(__file__).resolve().parents[1]
# The committed adapters: the session engine serves them beside the base model.
DEFAULT_ADAPTER = "gsm8k-pot"
DEFAULT_ADAPTER_DIR = REPO / "programs" / "adapters" / DEFAULT_ADAPTER
GAME24_ADAPTER = "game24-tot"
GAME24_ADAPTER_DIR = REPO / "programs" / "adapters" / GAME24_ADAPTER
DATA_DIR = Path(os.environ.get("REASONFLOW_DATA_DIR") or REPO.parent / "shared" / "data")


def alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cli(*args: str, home: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "REASONFLOW_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "reasonflow.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def base_url_of(output: str) -> str:
    match = re.search(r"^base_url: (\S+)$", output, re.M)
    assert match, f"no base_url line in {output!r}"
    return match.group(1)


@pytest.fixture(scope="session", autouse=True)
def code_sandbox():
    """Jail or explicit opt-in: model-written code runs in reasonflow.sandbox's bubblewrap jail; on a host
    without one (no bwrap, no user namespaces) this session opts in to unisolated code explicitly, and
    says so, so that PoT tests still run. Tests of the jail itself use ``jail``, which then skips (and
    fails under CI, where `make test` installs bubblewrap)."""
    from reasonflow import sandbox

    iso = sandbox.isolation()
    if iso.available:
        yield iso
        sandbox.shutdown()
        return
    saved = os.environ.get(sandbox.ALLOW_UNISOLATED_ENV)
    os.environ[sandbox.ALLOW_UNISOLATED_ENV] = "1"
    print(f"\nNOTE: {iso.reason}; this test session runs model-written code UNISOLATED "
          f"({sandbox.ALLOW_UNISOLATED_ENV}=1)", file=sys.stderr)
    yield iso
    sandbox.shutdown()
    if saved is None:
        os.environ.pop(sandbox.ALLOW_UNISOLATED_ENV, None)
    else:
        os.environ[sandbox.ALLOW_UNISOLATED_ENV] = saved


@pytest.fixture()
def jail(code_sandbox):
    """The bubblewrap jail, for tests of the isolation itself."""
    if not code_sandbox.available:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the code sandbox's jail: {code_sandbox.reason}")
        pytest.skip(f"no bubblewrap jail here: {code_sandbox.reason}")
    return code_sandbox


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "gsm8k" / "test.jsonl").is_file():
        pytest.skip(f"benchmark data not found at {DATA_DIR} (set REASONFLOW_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def engine_home(tmp_path_factory) -> Path:
    """A private home for the test engine's state file and logs, sharing the user's model cache."""
    shared = home_dir()
    home = tmp_path_factory.mktemp("reasonflow-home")
    for sub in ("models", "downloads"):
        (shared / sub).mkdir(parents=True, exist_ok=True)
        (home / sub).symlink_to(shared / sub)
    return home


class EngineHandle:
    """The session's engine, as the CLI reports it; ``restart()`` is for the lifecycle test."""

    def __init__(self, home: Path):
        self.home = home
        self.base_url = ""
        self.up_output = ""
        self.external = False

    def up(self) -> subprocess.CompletedProcess:
        done = cli("engine", "up", "--lora", f"{DEFAULT_ADAPTER}={DEFAULT_ADAPTER_DIR}",
                   "--lora", f"{GAME24_ADAPTER}={GAME24_ADAPTER_DIR}", home=self.home)
        assert done.returncode == 0, done.stderr[-3000:]
        self.base_url = base_url_of(done.stdout)
        self.up_output = done.stdout + done.stderr
        return done

    def down(self) -> subprocess.CompletedProcess:
        return cli("engine", "down", home=self.home, timeout=120)


@pytest.fixture(scope="session")
def engine(engine_home) -> EngineHandle:
    """The session's engine. With REASONFLOW_TEST_BASE_URL set, tests use that running server instead
    (for development next to a running engine; the lifecycle test then skips)."""
    handle = EngineHandle(engine_home)
    external = os.environ.get("REASONFLOW_TEST_BASE_URL")
    if external:
        handle.base_url, handle.external = external, True
        os.environ["REASONFLOW_BASE_URL"] = external
        yield handle
        return
    handle.up()
    _SESSION["engine"] = handle
    os.environ["REASONFLOW_BASE_URL"] = handle.base_url  # for code under test that calls connect()
    yield handle
    handle.down()
    os.environ.pop("REASONFLOW_BASE_URL", None)


@pytest.fixture()
def lm(engine):
    import reasonflow

    return reasonflow.connect(engine.base_url, max_tokens=384)


_SESSION: dict = {}  # the session's engine handle, once started


@pytest.fixture()
def sole_engine():
    """For tests that start an engine of their own (``serve`` without a base URL, a bare script): the
    session's engine is stopped first, so two engines never run at once. Such tests run last."""
    handle = _SESSION.pop("engine", None)
    if handle is not None:
        handle.down()
        os.environ.pop("REASONFLOW_BASE_URL", None)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: "sole_engine" in getattr(item, "fixturenames", ()))  # stable: others keep order
