"""Waiting for a container process in the foreground (`run`, `exec` without --detach):
signals forwarded to it, its exit status returned the shell's way (128+signal), and,
with a terminal, the caller's terminal wired to the container's pty in raw mode."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import sys
import termios
import tty
from collections.abc import Iterator

from matou.linux import libc
from matou.linux import pty as ptys

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2, signal.SIGCONT, signal.SIGTSTP)


def become_subreaper() -> None:
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)


def console_pair() -> tuple[socket.socket, socket.socket]:
    """(ours, theirs): the runtime sends the pty master on ``theirs``."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def status_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    old = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def wait(pid: int, master: int | None = None) -> int:
    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    if master is None:
        return _reap(pid)
    if os.isatty(0):
        rows, cols = ptys.get_size(0)
        ptys.set_size(master, rows, cols)

    def winch(_sig: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            r, c = ptys.get_size(0)
            ptys.set_size(master, r, c)

    signal.signal(signal.SIGWINCH, winch)
    with _raw(0):
        _pump(pid, master)
    return _reap(pid)


def _reap(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return status_code(status)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 255


def _pump(pid: int, master: int) -> None:
    stdin_open = True
    out = sys.stdout.fileno()
    while True:
        fds = [master] + ([0] if stdin_open else [])
        try:
            ready, _, _ = select.select(fds, [], [], 0.2)
        except InterruptedError:
            continue
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError as e:
                if e.errno == errno.EIO:  # every slave fd closed: the process is gone
                    return
                raise
            if not data:
                return
            os.write(out, data)
        if 0 in ready:
            data = os.read(0, 65536)
            if not data:
                stdin_open = False
            else:
                os.write(master, data)
        # peek (WNOWAIT) so that _reap still gets the status
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            _drain(master, out)
            return


def _drain(master: int, out: int) -> None:
    os.set_blocking(master, False)
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            return
        if not data:
            return
        os.write(out, data)
