"""The lifeline watchdog of an owned engine: stops the engine's process group when its owner is gone.

How it runs: ``python -I -S _watchdog.py PGID GRACE_S`` with fd 0 the read end of a pipe whose write end
only the owner holds (``reasonflow.engine.server.Engine`` starts it). However the owner ends (a clean
exit, an exception, SIGTERM, SIGINT, SIGKILL, an OOM kill), the kernel closes the write end and the
read here returns EOF; the watchdog then sends SIGTERM to the engine's process group, waits up to
GRACE_S seconds for the group to empty, and sends SIGKILL. It also exits, without signalling, once the
group is empty on its own (the owner stopped the engine). It runs in its own session and ignores
SIGINT and SIGTERM, so the signal that ends the owner (a terminal's Ctrl-C reaches the whole
foreground group) does not end it first. It imports nothing from reasonflow.

Not guaranteed: a SIGKILL of the watchdog itself (then the owner's own stop, if it runs, is the only
one left).
"""

import os
import select
import signal
import sys
import time

POLL_S = 1.0


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(pgid, grace_s):
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.1)


def main():
    pgid, grace_s = int(sys.argv[1]), float(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    poller = select.poll()
    poller.register(0, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        if poller.poll(int(POLL_S * 1000)):
            try:
                data = os.read(0, 64)
            except OSError:
                data = b""
            if not data:  # EOF: the owner is gone (or stopped the engine and closed the lifeline)
                break
        elif not _group_alive(pgid):
            return 0  # the engine ended by itself
    if _group_alive(pgid):
        _stop(pgid, grace_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
