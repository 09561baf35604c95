"""Pseudo-terminals for containers: a pty pair from the container's own devpts, and
the runc console-socket protocol (the master fd sent with SCM_RIGHTS)."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios

from matou.errors import from_oserror

_TIOCSPTLCK = 0x40045431
_TIOCGPTN = 0x80045430
_TIOCGPTPEER = 0x5441


def open_pty(ptmx: str = "/dev/ptmx") -> tuple[int, int, str]:
    """(master, slave, slave path) from ``ptmx``; the slave is opened from the master
    (TIOCGPTPEER) so no path lookup in the container can substitute it."""
    try:
        master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        n = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0\0\0\0"))[0]
        slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    except OSError as e:
        raise from_oserror("open pty", ptmx, e) from e
    return master, slave, f"/dev/pts/{n}"


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def make_controlling(slave: int) -> None:
    """Start a session with ``slave`` as its terminal and as stdin/stdout/stderr."""
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for std in (0, 1, 2):
        os.dup2(slave, std)


def send_console(sock: socket.socket, master: int, name: str) -> None:
    socket.send_fds(sock, [name.encode()], [master])


def recv_console(sock: socket.socket) -> int:
    _, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    if not fds:
        raise OSError("console socket: no fd received")
    return fds[0]
