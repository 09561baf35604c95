"""Reading /proc: a process's start time (to tell a reused pid), its state, its children."""

from __future__ import annotations

import os


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the comm field may hold spaces and parentheses: split after the last ')'
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    f = stat_fields(pid)
    return int(f[19]) if f else None


def is_alive(pid: int, started: int | None) -> bool:
    """True if ``pid`` runs and is the same process (same start time), not a zombie."""
    f = stat_fields(pid)
    if f is None or f[0] in ("Z", "X"):
        return False
    return started is None or int(f[19]) == started


def ns_inode(pid: int | str, name: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{name}").st_ino
    except OSError:
        return None
