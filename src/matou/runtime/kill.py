"""`kill`: send a signal to the init (or, with --all, every process of the container)."""

from __future__ import annotations

import os
import signal

from matou.errors import FailedPrecondition, InvalidArgument
from matou.oci import state as oci_state
from matou.runtime.store import Record, Store


def parse_signal(text: str) -> int:
    if text.isdigit():
        n = int(text)
        if not 0 < n <= signal.SIGRTMAX:
            raise InvalidArgument(f"invalid signal {text!r}")
        return n
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidArgument(f"unknown signal {text!r}") from None


def kill(store: Store, container_id: str, sig: int, all_processes: bool = False) -> None:
    rec = store.load(container_id)
    if store.status(rec) == oci_state.STOPPED:
        raise FailedPrecondition("container not running")
    if all_processes:
        signal_all(rec, sig)
        return
    try:
        os.kill(rec.pid, sig)
    except ProcessLookupError:
        raise FailedPrecondition("container not running") from None


def signal_all(rec: Record, sig: int) -> None:
    """Signal every process in the container's cgroup; a frozen container is thawed after
    a SIGKILL so that the kill is delivered."""
    cg = rec.cgroup()
    for pid in cg.pids():
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    if sig == signal.SIGKILL and cg.is_frozen():
        cg.freeze(False)
