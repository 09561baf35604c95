"""The daemon's handle on its fork server: started when first needed, let go when idle,
started again afterwards; a dead server is replaced by the next spawn."""

from __future__ import annotations

import os
import signal
import time

import pytest

from matou.errors import SystemError_
from matou.shim.forkserver import ForkServer


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def test_started_on_first_need_and_let_go_when_idle() -> None:
    forks = ForkServer()
    assert forks.sock is None and forks.pid == 0  # nothing runs until asked
    try:
        forks.warm()
        first = forks.pid
        assert first and _alive(first)
        forks.warm()  # already running: the same server
        assert forks.pid == first
        assert not forks.stop_if_idle(idle=60)  # just used
        assert forks.stop_if_idle(idle=0)
        assert forks.sock is None and not _alive(first)  # gone, and reaped
        forks.warm()
        assert forks.pid != first and _alive(forks.pid)
    finally:
        forks.stop()
    assert forks.sock is None


def test_no_stop_while_a_spawn_holds_it() -> None:
    forks = ForkServer()
    try:
        forks.warm()
        with forks.lock:  # what a spawn in flight holds
            assert not forks.stop_if_idle(idle=0)
        assert forks.sock is not None
    finally:
        forks.stop()


def test_a_dead_server_fails_one_spawn_and_the_next_starts_anew() -> None:
    forks = ForkServer()
    try:
        forks.warm()
        dead = forks.pid
        os.kill(dead, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(dead):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(SystemError_):
            forks.spawn({"kind": "nothing"})
        assert forks.sock is None
        forks.warm()
        assert forks.pid != dead and _alive(forks.pid)
    finally:
        forks.stop()
