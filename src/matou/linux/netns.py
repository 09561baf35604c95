"""Network namespaces pinned on a file (a bind mount of nsfs), and work done inside one.

unshare(CLONE_NEWNET) and setns(CLONE_NEWNET) change only the calling thread, so a
short-lived thread makes or enters a namespace and ends there: the threaded daemon is
never forked, and no other thread ever runs in a container's namespace.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from matou.errors import SystemError_, from_oserror
from matou.linux import libc

T = TypeVar("T")


def _in_thread(fn: Callable[[], T]) -> T:
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as e:
            failure.append(e)

    t = threading.Thread(target=body, name="matou-netns")
    t.start()
    t.join()
    if failure:
        raise failure[0]
    return result[0]


def create(path: str) -> None:
    """A new, empty network namespace that lives as long as ``path`` stays mounted."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDONLY | os.O_CLOEXEC, 0o444))
    except OSError as e:
        raise from_oserror("create netns file", path, e) from e

    def pin() -> None:
        libc.unshare(libc.CLONE_NEWNET)
        libc.mount("/proc/thread-self/ns/net", path, None, libc.MS_BIND, None)

    try:
        _in_thread(pin)
    except BaseException:
        os.unlink(path)
        raise


def remove(path: str) -> None:
    """Unpin and forget ``path``; the namespace goes once nothing else holds it."""
    try:
        libc.umount2(path, libc.MNT_DETACH)
    except SystemError_ as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def run_in(path: str, fn: Callable[[], T]) -> T:
    """``fn()`` in a thread that has entered the network namespace pinned at ``path``."""
    def entered() -> T:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise from_oserror("open netns", path, e) from e
        try:
            libc.setns(fd, libc.CLONE_NEWNET, path)
        finally:
            os.close(fd)
        return fn()

    return _in_thread(entered)
