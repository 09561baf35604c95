"""`ps`: the container's processes, as pids (--format json) or as `ps -ef` lines."""

from __future__ import annotations

import subprocess

from matou.runtime.store import Store


def pids(store: Store, container_id: str) -> list[int]:
    return sorted(store.load(container_id).cgroup().pids())


def table(store: Store, container_id: str, ps_args: list[str]) -> str:
    wanted = set(pids(store, container_id))
    out = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    if not out:
        return ""
    header = out[0].split()
    col = header.index("PID") if "PID" in header else 1
    rows = [line for line in out[1:] if len(line.split()) > col
            and line.split()[col].isdigit() and int(line.split()[col]) in wanted]
    return "\n".join([out[0], *rows]) + "\n"
