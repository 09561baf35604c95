"""JSON records on disk that survive a crash at any instant: written to a temporary file,
fsync'd, renamed over the old one; changed under an flock(2) by one process at a time."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def write_atomic(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def read(path: str, default: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        with open(path) as f:
            data: dict[str, Any] = json.load(f)
            return data
    except FileNotFoundError:
        return default()


@contextmanager
def locked(path: str, lock: str, default: Callable[[], dict[str, Any]]
           ) -> Iterator[dict[str, Any]]:
    """The record at ``path``, held under the flock of ``lock``; written back (atomically)
    on leaving the block, if it changed."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = read(path, default)
        before = json.dumps(data, sort_keys=True)
        yield data
        if json.dumps(data, sort_keys=True) != before:
            write_atomic(path, data)
    finally:
        os.close(fd)
