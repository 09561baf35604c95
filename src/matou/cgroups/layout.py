"""Where the cgroup hierarchies of this host are mounted (v1, v2 or the hybrid of both).

    /sys/fs/cgroup/                 tmpfs (v1 or hybrid)     cgroup2 (pure v2)
      cpu/  memory/  pids/ …        one v1 hierarchy per controller (or co-mounted set)
      systemd/                      named v1 hierarchy (name=systemd), holds no limits
      unified/                      cgroup2, in the hybrid layout (here: hugetlb only)
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple


class Hierarchy(NamedTuple):
    mountpoint: str
    version: int              # 1 or 2
    controllers: frozenset[str]
    options: str              # the v1 mount options that name it (e.g. "cpu,cpuacct")

    @property
    def key(self) -> str:
        """How /proc/PID/cgroup names this hierarchy ("" for v2)."""
        return "" if self.version == 2 else self.options


_V1_CONTROLLERS = {
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb",
    "net_cls", "net_prio", "perf_event", "rdma", "misc",
}


@lru_cache(maxsize=1)
def hierarchies() -> tuple[Hierarchy, ...]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if not rfields:
                continue
            fstype, mnt = rfields[0], fields[4]
            if fstype == "cgroup2":
                try:
                    with open(f"{mnt}/cgroup.controllers") as c:
                        ctrls = frozenset(c.read().split())
                except OSError:
                    ctrls = frozenset()
                out.append(Hierarchy(mnt, 2, ctrls, ""))
            elif fstype == "cgroup":
                opts = rfields[2].split(",")
                ctrls = frozenset(o for o in opts if o in _V1_CONTROLLERS)
                names = [o for o in opts if o.startswith("name=")]
                key = ",".join(sorted(ctrls)) if ctrls else (names[0] if names else "")
                out.append(Hierarchy(mnt, 1, ctrls, key))
    return tuple(out)


def own_paths() -> dict[str, str]:
    """This process's cgroup path per hierarchy key ("" is v2)."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            out[",".join(sorted(ctrls.split(","))) if ctrls else ""] = path
    return out
