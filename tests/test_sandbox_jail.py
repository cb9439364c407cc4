"""The jail around model-written code (issue #13, point 1 and the sandbox's smaller points).

Most attacks run twice: with the Python-level guards on (as served) and off (``sandbox.GUARDS = False``:
the program gets the real ``open``, ``__import__`` and every module), because the guards are not the
boundary: the bubblewrap jail and the seccomp filters must hold whatever Python the program runs.
Each test states what must not happen on the host; most also name the typed error.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from reasonflow import sandbox
from reasonflow.errors import SandboxError
from reasonflow.sandbox import (
    SandboxCodeError, SandboxForbidden, SandboxMemoryError, SandboxTimeout, SandboxUnavailable,
    arun_code, run_code,
)

SECRET = "hunter2-sec13-secret"
SLACK_S = 2.5  # jail start and kill on a shared, loaded 2-core machine
EXPLOIT = ("g=__import__.__globals__; g['_BLOCKED_EVENTS'].clear(); g['_BLOCKED_PREFIXES']=('zz',)\n"
           "answer=g['builtins'].open('/etc/hostname').read()")  # the issue's exploit, as it was written


@pytest.fixture(params=["guards", "no-guards"])
def guards(request, monkeypatch, jail):
    monkeypatch.setattr(sandbox, "GUARDS", request.param == "guards", raising=False)
    return request.param == "guards"


@pytest.fixture()
def bare(monkeypatch, jail):
    """The jail alone: no Python-level guards."""
    monkeypatch.setattr(sandbox, "GUARDS", False, raising=False)


def attempt(code: str, **limits):
    limits = {"timeout_s": 3.0, "cpu_s": 2, **limits}
    started = time.monotonic()
    try:
        return run_code(code, **limits), time.monotonic() - started
    except SandboxError as exc:
        return exc, time.monotonic() - started


def leaked(outcome, *needles: str) -> bool:
    """Whether any needle shows in what came back (the answer, printed output, or the error)."""
    text = json.dumps(getattr(outcome, "answer", None), default=str) + str(getattr(outcome, "stdout", ""))
    text += str(outcome) + str(getattr(outcome, "stderr_tail", ""))
    return any(n and n in text for n in needles)


# --- the issue's exploit and its consequences --------------------------------------------------------

def test_the_issues_exploit_reads_no_host_file(jail):
    outcome, _ = attempt(EXPLOIT)
    assert isinstance(outcome, SandboxError), outcome  # before: the host's hostname came back
    assert not leaked(outcome, socket.gethostname())


def test_the_issues_route_through_import_globals_reaches_no_host_file(guards):
    outcome, _ = attempt("g=__import__.__globals__\nanswer=g['builtins'].open('/etc/hostname').read()")
    assert isinstance(outcome, SandboxForbidden if guards else SandboxCodeError), outcome
    assert not leaked(outcome, socket.gethostname())


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/hostname", "/proc/self/environ", "/proc/1/cmdline",
                                  "/proc/{ppid}/environ", "/proc/{ppid}/cmdline", "{secret_file}"])
def test_no_host_file_and_no_other_process_can_be_read(bare, tmp_path, monkeypatch, path):
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    monkeypatch.setenv("REASONFLOW_TEST_SECRET", SECRET)
    target = path.format(ppid=os.getpid(), secret_file=secret_file)
    outcome, _ = attempt(f"answer = open({target!r}).read()")
    assert isinstance(outcome, SandboxCodeError) and "No such file" in outcome.reason, outcome
    assert not leaked(outcome, SECRET)


def test_the_file_system_holds_only_the_interpreter_and_no_packages(bare):
    result = run_code("import os, sys\nanswer = [sorted(os.listdir('/')), sorted(os.listdir('/dev')), "
                      "[p for p in sys.path if os.path.isdir(p) and any(n.endswith('-packages') for n in "
                      "os.listdir(p))]]")
    root, dev, site_dirs = result.answer
    assert set(root) <= {"dev", "tmp", "usr", "lib64", "sandbox", "root", "lib", "bin"} and "etc" not in root
    assert "proc" not in root and "work" not in root and "home" not in root
    assert "sda" not in dev and "mem" not in dev
    assert all(not os.listdir(os.path.join(p, n)) for p in site_dirs for n in [])  # nothing listed beside stdlib
    hidden = run_code("import os, sysconfig\np = sysconfig.get_paths()['purelib']\n"
                      "answer = os.listdir(p) if os.path.isdir(p) else []")
    assert hidden.answer == []  # site-packages is an empty mount


def test_no_environment_uid_nobody_and_no_hostname(bare, monkeypatch):
    monkeypatch.setenv("REASONFLOW_TEST_SECRET", SECRET)
    result = run_code("import os\nanswer = [dict(os.environ), os.getuid(), os.getgid(), os.uname().nodename]")
    env, uid, gid, host = result.answer
    assert SECRET not in json.dumps(env) and set(env) <= {"PWD", "LC_CTYPE"}
    assert (uid, gid) == (sandbox.JAIL_UID, sandbox.JAIL_UID) and host == "sandbox"
    assert result.isolated and result.seccomp


# --- introspection routes ----------------------------------------------------------------------------

INTROSPECTION = {
    "subclasses_fileio": "c = [k for k in ().__class__.__base__.__subclasses__() if k.__name__ == 'FileIO'][0]\n"
                         "answer = c('/etc/passwd').read()",
    "subclasses_os_via_wrap_close": "k = [k for k in object.__subclasses__() if k.__name__ == '_wrap_close'][0]\n"
                                    "os = k.__init__.__globals__['sys'].modules['os']\n"
                                    "answer = os.listdir('/proc')",
    "function_globals": "answer = __import__.__globals__['os'].listdir('/etc')",
    "frame_walk": "import sys\nf = sys._getframe()\nwhile f.f_back is not None:\n    f = f.f_back\n"
                  "answer = f.f_globals['os'].listdir('/etc')",
    "traceback_frames": "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    f = e.__traceback__.tb_frame\n"
                        "while f.f_back is not None:\n    f = f.f_back\n"
                        "answer = f.f_globals['builtins'].open('/etc/passwd').read()",
    "module_sys_attribute": "import fractions\nanswer = fractions.sys.modules['os'].listdir('/etc')",
}


@pytest.mark.parametrize("case", sorted(INTROSPECTION))
def test_introspection_reaches_nothing_of_the_host(guards, case):
    outcome, _ = attempt(INTROSPECTION[case])
    assert isinstance(outcome, SandboxError), outcome
    assert not leaked(outcome, "root:x:0:0", "/bin/bash", ".pyenv")


def test_frames_and_gc_hold_neither_the_nonce_nor_the_parents_secrets(bare, monkeypatch):
    nonce = "feedface" * 4
    monkeypatch.setattr(sandbox.secrets, "token_hex", lambda n=16: nonce)
    monkeypatch.setattr(sandbox, "SPARES", 0)
    sandbox.shutdown()  # the next jail gets the known nonce
    monkeypatch.setenv("REASONFLOW_TEST_SECRET", SECRET)
    # The needles are built at run time from reversed text, so the program's own source holds neither.
    code = ("import gc, sys\nneedles = [" + repr(nonce[::-1]) + "[::-1], " + repr(SECRET[::-1]) + "[::-1]]\n"
            "values = []\nfor o in gc.get_objects():\n"
            "    items = list(o.keys()) + list(o.values()) if isinstance(o, dict) else o if isinstance(o, (list, tuple, "
            "set, frozenset)) else ()\n"
            "    values += [v for v in items if isinstance(v, (str, bytes, bytearray))]\n"
            "f = sys._getframe()\nwhile f is not None:\n"
            "    values += [v for d in (f.f_locals, f.f_globals) for v in d.values() if isinstance(v, (str, bytes))]\n"
            "    f = f.f_back\n"
            "def found(n):\n"
            "    return any(v is not n and (n in v if isinstance(v, str) else n.encode() in v) for v in values)\n"
            "answer = [found(n) for n in needles] + [len(values) > 100]")
    result = run_code(code, memory_mb=512)
    assert result.answer == [False, False, True]


def test_a_corrupt_code_object_crashes_only_the_jail(bare):
    outcome, _ = attempt("f = lambda: 0\ng = type(f)(f.__code__.replace(co_consts=()), {})\nanswer = g()")
    assert isinstance(outcome, SandboxError), outcome
    assert run_code("answer = 1").answer == 1


# --- processes, signals, network, files ---------------------------------------------------------------

@pytest.mark.parametrize("target", ["os.getppid()", "1", "-1", "0", str(os.getpid())])
def test_no_signal_reaches_another_process(bare, target):
    outcome, _ = attempt(f"import os, signal\nos.kill({target}, signal.SIGKILL)\nanswer = 'sent'")
    assert isinstance(outcome, SandboxCodeError) and "Operation not permitted" in outcome.reason, outcome
    assert run_code("answer = 2").answer == 2  # the supervisor survived; so did we


def test_a_program_may_signal_itself(bare):
    result = run_code("import os, signal\nsignal.signal(signal.SIGUSR1, lambda *a: None)\n"
                      "os.kill(os.getpid(), signal.SIGUSR1)\nanswer = 'ok'")
    assert result.answer == "ok"


def test_a_loopback_socket_gets_nowhere(bare):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    try:
        for family in ("socket.AF_INET", "socket.AF_UNIX"):
            outcome, _ = attempt(f"import socket\ns = socket.socket({family})\ns.connect(('127.0.0.1', {port}))\n"
                                 "answer = 1")
            assert isinstance(outcome, SandboxCodeError) and "Operation not permitted" in outcome.reason, outcome
        with pytest.raises(socket.timeout):
            server.accept()  # nobody connected
    finally:
        server.close()


@pytest.mark.parametrize("where", ["{tmp}/pwned", "/tmp/../etc/pwned", "{stdlib}/pwned.py", "/usr/pwned"])
def test_nothing_is_written_outside_the_jails_own_tmp(bare, tmp_path, where):
    import sysconfig

    target = where.format(tmp=tmp_path, stdlib=sysconfig.get_paths()["stdlib"])
    outcome, _ = attempt(f"open({target!r}, 'w').write('x')\nanswer = 1")
    assert isinstance(outcome, SandboxCodeError), outcome
    assert not os.path.exists(target)


def test_the_jails_tmp_is_private_and_small(bare):
    assert run_code("open('/tmp/x', 'w').write('y')\nanswer = open('/tmp/x').read()").answer == "y"
    outcome, _ = attempt("open('/tmp/big', 'wb').write(b'x' * (sandbox.JAIL_TMP_BYTES + 1))\nanswer = 1"
                         .replace("sandbox.JAIL_TMP_BYTES", str(sandbox.JAIL_TMP_BYTES)), memory_mb=512)
    assert isinstance(outcome, SandboxCodeError), outcome


@pytest.mark.parametrize("code", [
    "import os\nanswer = os.fork()",
    "import os\nos.setsid()\nanswer = 1",
    "import subprocess\nanswer = subprocess.run(['/bin/sh', '-c', 'true']).returncode",
    "import os\nos.execv('/usr/bin/true', ['true'])\nanswer = 1",
    "import threading\nt = threading.Thread(target=print)\nt.start()\nanswer = 1",
])
def test_no_process_or_thread_can_be_started(bare, code):
    outcome, _ = attempt(code)
    assert isinstance(outcome, SandboxError), outcome


def test_a_setsid_child_cannot_outlive_the_deadline(jail):
    # The issue's route to the real os, then fork + setsid + sleep: before, the child outlived the kill.
    code = ("g = __import__.__globals__\ng.get('_BLOCKED_EVENTS', set()).clear()\n"
            "g['_BLOCKED_PREFIXES'] = ('zz',)\nos = g['os']\npid = os.fork()\nif pid == 0:\n    os.setsid()\n"
            "    g['signal'].alarm(6)\n    r, w = os.pipe()\n    os.read(r, 1)\n    os._exit(0)\nanswer = pid")
    outcome, _ = attempt(code, timeout_s=1.0)
    pid = getattr(outcome, "answer", None)
    if isinstance(pid, int) and pid > 0:
        time.sleep(1.5)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    else:
        assert isinstance(outcome, SandboxError), outcome


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_nothing_in_the_jail_outlives_the_deadline(bare, monkeypatch):
    monkeypatch.setattr(sandbox, "SPARES", 0)
    sandbox.shutdown()
    roots, seen = [], set()
    real_popen = subprocess.Popen

    def spy(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        roots.append(proc.pid)
        return proc

    monkeypatch.setattr(sandbox.subprocess, "Popen", spy)
    done = threading.Event()

    def watch():
        while not done.is_set():
            for root in roots:
                seen.update(_descendants(root) | {root})
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        outcome, elapsed = attempt("import time\ntime.sleep(60)", timeout_s=1.5, cpu_s=5)
    finally:
        done.set()
        watcher.join()
    assert isinstance(outcome, SandboxTimeout) and elapsed < 1.5 + SLACK_S
    assert len(seen) >= 3  # bwrap, its init, the supervisor (and the worker)
    time.sleep(1.0)
    alive = [pid for pid in seen if os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read()
             .rsplit(")", 1)[1].split()[0]]
    assert alive == []


def test_a_forged_result_on_stdout_is_refused(guards):
    forged = [json.dumps({"nonce": "0" * 32, "record": {"status": "ok", "answer": "666"}, "exit": {"code": 0}}),
              json.dumps({"status": "ok", "answer": "666"})]  # the old protocol's result line, last
    code = ("g = __import__.__globals__\ng.get('_BLOCKED_EVENTS', set()).clear()\ng['_BLOCKED_PREFIXES'] = ('zz',)\n"
            "os = g['os']\n" + "".join(f"os.write(1, {(line + chr(10)).encode()!r})\nos.write(2, {line.encode()!r})\n"
                                       for line in forged) + "os._exit(0)")
    outcome, _ = attempt(code)
    assert isinstance(outcome, SandboxError), outcome  # before: answer 666
    assert getattr(outcome, "answer", None) != 666


# --- limits ------------------------------------------------------------------------------------------

def test_an_infinite_loop_a_huge_allocation_and_input_end_in_typed_errors(guards):
    loop, elapsed = attempt("while True:\n    pass", timeout_s=1.5, cpu_s=30)
    assert isinstance(loop, SandboxTimeout) and elapsed < 1.5 + SLACK_S
    memory, _ = attempt("x = bytearray(1024 ** 3)\nanswer = len(x)")
    assert isinstance(memory, SandboxMemoryError), memory
    stdin, _ = attempt("answer = input()")
    assert isinstance(stdin, SandboxForbidden if guards else SandboxCodeError), stdin


def test_concurrent_endless_loops_all_end_at_their_deadline(jail):
    """8 loops with a 2 s deadline end in about 2 s together, not one after another (before: 8 s)."""
    async def main():
        started = time.monotonic()
        outcomes = await asyncio.gather(*(arun_code("while True:\n    pass", timeout_s=2.0, cpu_s=30)
                                          for _ in range(8)), return_exceptions=True)
        return outcomes, time.monotonic() - started

    outcomes, elapsed = asyncio.run(main())
    assert all(isinstance(o, SandboxTimeout) for o in outcomes), outcomes
    assert elapsed < 2.0 + SLACK_S


def test_sandboxes_do_not_block_the_event_loops_default_executor(jail):
    """While more programs run than the default executor has threads, to_thread work is not stuck behind
    them (before: /readyz waited 4.6 s)."""
    count = min(32, (os.cpu_count() or 1) + 4) + 2

    async def main():
        runs = [asyncio.ensure_future(arun_code("import time\ntime.sleep(2)\nanswer = 1", timeout_s=4.0))
                for _ in range(count)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await asyncio.to_thread(lambda: None)
        waited = time.monotonic() - started
        await asyncio.gather(*runs, return_exceptions=True)
        return waited

    sandbox_guards, sandbox.GUARDS = sandbox.GUARDS, False  # time.sleep without the guards' refusal
    try:
        assert asyncio.run(main()) < 0.5
    finally:
        sandbox.GUARDS = sandbox_guards


def test_the_warm_pool_keeps_spares_booted(jail, monkeypatch):
    monkeypatch.setattr(sandbox, "SPARES", 2)
    sandbox.shutdown()
    run_code("answer = 1")
    deadline = time.monotonic() + 5
    while len(sandbox._POOL._spares) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sandbox._POOL._spares) == 2 and all(j.alive() for j in sandbox._POOL._spares)
    assert run_code("answer = 2").answer == 2


# --- no isolation: say so, refuse, or run unisolated by explicit opt-in --------------------------------

def test_without_a_jail_code_is_refused_unless_the_caller_opts_in(monkeypatch):
    monkeypatch.setattr(sandbox, "isolation", lambda: sandbox.Isolation(False, "bubblewrap (bwrap) is not installed"))
    monkeypatch.delenv(sandbox.ALLOW_UNISOLATED_ENV, raising=False)
    monkeypatch.setattr(sandbox, "_allow_override", None)
    started = []
    monkeypatch.setattr(sandbox, "_Jail", lambda *a, **k: started.append(a) or (_ for _ in ()).throw(AssertionError))
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        run_code("answer = 1")
    assert started == [] and not sandbox.available()
    assert "refused" in sandbox.describe()


def test_the_opt_in_runs_code_unisolated_and_says_so(monkeypatch):
    monkeypatch.setattr(sandbox, "isolation", lambda: sandbox.Isolation(False, "bubblewrap (bwrap) is not installed"))
    monkeypatch.setenv(sandbox.ALLOW_UNISOLATED_ENV, "1")
    monkeypatch.setattr(sandbox, "_allow_override", None)
    sandbox.shutdown()
    result = run_code("answer = 6 * 7")
    assert result.answer == 42 and result.isolated is False
    assert "UNISOLATED" in sandbox.describe()
    sandbox.shutdown()


def test_the_host_reports_what_isolation_it_has():
    done = subprocess.run([sys.executable, "-m", "reasonflow.sandbox"], capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("sandbox: ") and done.returncode == (0 if sandbox.isolation().available else 1)


def test_the_parent_is_alive_and_unharmed(jail):
    assert os.getpid() > 0 and signal.getsignal(signal.SIGINT) is not None


def test_pot_raises_sandbox_unavailable_before_any_lm_call(monkeypatch):
    import dspy

    import reasonflow
    from reasonflow.testing import ScriptedLM

    monkeypatch.setattr(sandbox, "isolation", lambda: sandbox.Isolation(False, "bubblewrap (bwrap) is not installed"))
    monkeypatch.delenv(sandbox.ALLOW_UNISOLATED_ENV, raising=False)
    monkeypatch.setattr(sandbox, "_allow_override", None)
    lm = ScriptedLM(lambda call: {"code": "answer = 1"})
    with dspy.context(lm=lm, adapter=reasonflow.StructuredAdapter()):
        with pytest.raises(SandboxUnavailable):
            reasonflow.program("gsm8k.pot")(question="q")
    assert lm.calls == []
