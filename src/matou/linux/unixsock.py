"""Unix socket paths longer than sun_path allows (108 bytes, and runtime/container IDs are
64 characters): reached through /proc/self/fd/N/NAME, where N is an O_PATH fd of the
socket's directory, which is always short."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

_LIMIT = 100


@contextmanager
def short(path: str) -> Iterator[str]:
    """A path to ``path`` short enough for bind(2)/connect(2), valid inside the block."""
    if len(path.encode()) < _LIMIT:
        yield path
        return
    fd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{os.path.basename(path)}"
    finally:
        os.close(fd)


def bind(sock: socket.socket, path: str) -> None:
    with short(path) as p:
        sock.bind(p)


def connect(sock: socket.socket, path: str) -> None:
    with short(path) as p:
        sock.connect(p)
