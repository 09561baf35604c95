"""One container's cgroup across every hierarchy of the host, and the limits written to it.

Each resource goes to the v1 hierarchy of its controller when there is one; on a pure
cgroup2 host, to cgroup2; otherwise it is skipped, as runc does for a controller the host
does not mount (the hybrid layout's cgroup2 mount only tracks processes).
Writers are a table per version (crun's habit): ``_V1_WRITERS`` and ``_V2_WRITERS``.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from matou.cgroups.layout import Hierarchy, hierarchies, own_paths
from matou.errors import InvalidArgument, SystemError_, Unsupported, from_oserror

Resources = dict[str, Any]


def resolve_path(cgroups_path: str, container_id: str, systemd: bool = False) -> str:
    """The container's cgroup path from linux.cgroupsPath: absolute as is; relative under
    the runtime's own cgroup; ``slice:prefix:name`` as systemd would lay it out."""
    if systemd or (cgroups_path.count(":") == 2 and not cgroups_path.startswith("/")):
        if not cgroups_path:
            return f"/system.slice/matou-{container_id}.scope"
        slice_, prefix, name = cgroups_path.split(":")
        slice_ = slice_ or "system.slice"
        parts = slice_.removesuffix(".slice").split("-")
        dirs = ["-".join(parts[: i + 1]) + ".slice" for i in range(len(parts))]
        unit = f"{prefix}-{name}.scope" if prefix else name
        return "/" + "/".join([*dirs, unit])
    if not cgroups_path:
        return f"/{container_id}"
    # a relative path is placed under the runtime's own cgroup by Manager(relative=True)
    return os.path.normpath("/" + cgroups_path.lstrip("/"))


class Manager:
    """A cgroup at ``path`` in each hierarchy (``relative`` puts it under our own)."""

    def __init__(self, path: str, relative: bool = False,
                 layout: tuple[Hierarchy, ...] | None = None) -> None:
        self.path = path
        self.relative = relative
        self.layout = hierarchies() if layout is None else layout
        own = own_paths() if relative else {}
        v1 = {c for h in self.layout if h.version == 1 for c in h.controllers}
        self.v1 = {c: h for h in self.layout if h.version == 1 for c in h.controllers}
        # In the hybrid layout cgroup2 holds no controller matou may use (enabling one
        # there would bind it to v2 for the whole host), so the container stays out of it.
        self.v2 = None if v1 else next((h for h in self.layout if h.version == 2), None)
        self.v2_controllers = self.v2.controllers if self.v2 else frozenset()
        self.dirs: dict[Hierarchy, str] = {}
        for h in self.layout:
            if h.version == 2 and self.v2 is None:
                continue
            base = own.get(h.key, "/") if relative else "/"
            self.dirs[h] = os.path.join(h.mountpoint, base.lstrip("/"), path.lstrip("/"))

    @classmethod
    def for_spec(cls, cgroups_path: str, container_id: str, systemd: bool = False) -> Manager:
        path = resolve_path(cgroups_path, container_id, systemd)
        relative = bool(cgroups_path) and not cgroups_path.startswith("/") and ":" not in (
            cgroups_path)
        return cls(path, relative)

    # -- life cycle ----------------------------------------------------------------------

    def create(self) -> None:
        for h, d in self.dirs.items():
            try:
                self._mkdirs(h, d)
            except OSError as e:
                raise from_oserror("create cgroup", d, e) from e

    def _mkdirs(self, h: Hierarchy, d: str) -> None:
        missing = []
        p = d
        while not os.path.isdir(p) and p != h.mountpoint:
            missing.append(p)
            p = os.path.dirname(p)
        for m in reversed(missing):
            try:
                os.mkdir(m, 0o755)
            except FileExistsError:
                pass
            parent = os.path.dirname(m)
            if h.version == 1 and "cpuset" in h.controllers:
                # a new v1 cpuset is empty, and a task cannot join an empty cpuset
                for f in ("cpuset.cpus", "cpuset.mems"):
                    if not _read(m, f).strip():
                        _write(m, f, _read(parent, f).strip())
            if h.version == 2 and self.v2_controllers:
                enable = " ".join(f"+{c}" for c in sorted(self.v2_controllers))
                try:
                    _write(parent, "cgroup.subtree_control", enable)
                except SystemError_:
                    pass  # a controller the parent cannot delegate stays off

    def add(self, pid: int) -> None:
        for d in self.dirs.values():
            _write(d, "cgroup.procs", str(pid))

    def join_self(self) -> None:
        """Move the calling (single-threaded) process into the cgroup.

        A v1 thread moving itself through `tasks` skips the global threadgroup lock,
        whose first writer after a quiet spell waits a whole RCU grace period (~10 ms
        here); writing a pid to cgroup.procs always takes it.
        """
        for h, d in self.dirs.items():
            _write(d, _join_file(h), "0")

    def join_files(self) -> list[str]:
        """The files a process writes "0" to, to move itself in (see join_self)."""
        return [os.path.join(d, _join_file(h)) for h, d in self.dirs.items()]

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs.values())

    def destroy(self) -> None:
        """Remove the cgroup (children first) from every hierarchy; retried while busy."""
        for d in self.dirs.values():
            if not os.path.isdir(d):
                continue
            for sub, _, _ in sorted(os.walk(d), key=lambda t: -len(t[0])):
                for attempt in range(50):
                    try:
                        os.rmdir(sub)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as e:
                        if e.errno != errno.EBUSY or attempt == 49:
                            raise from_oserror("remove cgroup", sub, e) from e
                        time.sleep(0.01)

    # -- processes -------------------------------------------------------------------------

    def _main_dir(self) -> str:
        for ctrl in ("pids", "freezer", "memory", "cpu", "devices"):
            h = self.v1.get(ctrl)
            if h is not None and os.path.isdir(self.dirs[h]):
                return self.dirs[h]
        if self.v2 is not None:
            return self.dirs[self.v2]
        return next(iter(self.dirs.values()))

    def pids(self) -> list[int]:
        out: list[int] = []
        top = self._main_dir()
        for d, _, _ in os.walk(top):
            try:
                out.extend(int(p) for p in _read(d, "cgroup.procs").split())
            except SystemError_:
                continue
        return out

    # -- freezer ----------------------------------------------------------------------------

    def freeze(self, frozen: bool) -> None:
        h = self.v1.get("freezer")
        if h is not None:
            d = self.dirs[h]
            want = "FROZEN" if frozen else "THAWED"
            for _ in range(1000):
                _write(d, "freezer.state", want)
                if _read(d, "freezer.state").strip() == want:
                    return
                time.sleep(0.002)
            raise SystemError_("freeze", d, errno.EBUSY)
        if self.v2 is None:
            raise InvalidArgument("freezer: no freezer cgroup on this host")
        d = self.dirs[self.v2]
        _write(d, "cgroup.freeze", "1" if frozen else "0")
        for _ in range(1000):
            if f"frozen {int(frozen)}" in _read(d, "cgroup.events"):
                return
            time.sleep(0.002)
        raise SystemError_("freeze", d, errno.EBUSY)

    def is_frozen(self) -> bool:
        h = self.v1.get("freezer")
        try:
            if h is not None:
                return _read(self.dirs[h], "freezer.state").strip() == "FROZEN"
            if self.v2 is not None:
                return _read(self.dirs[self.v2], "cgroup.freeze").strip() == "1"
        except SystemError_:
            return False
        return False

    # -- limits -----------------------------------------------------------------------------

    def set(self, resources: Resources) -> None:
        for ctrl, writer in _V1_WRITERS:
            h = self.v1.get(ctrl)
            if h is not None:
                writer(self.dirs[h], resources)
            elif self.v2 is not None and _V2_NAMES.get(ctrl, ctrl) in self.v2_controllers:
                v2_writer = _V2_WRITERS.get(ctrl)
                if v2_writer is not None:
                    v2_writer(self.dirs[self.v2], resources)
            elif ctrl in _MUST_HAVE and resources.get(_MUST_HAVE[ctrl]):
                # a limit that cannot be set is an error, not a silent no-op (as runc)
                raise Unsupported(f"linux.resources.{_MUST_HAVE[ctrl]}: no {ctrl} cgroup "
                                  "controller on this host")
        if self.v2 is not None and not self.v1:
            for key, value in (resources.get("unified") or {}).items():
                if "/" in key or key.startswith("."):
                    raise InvalidArgument(f"linux.resources.unified: bad key {key!r}")
                _write(self.dirs[self.v2], key, str(value))

    def read(self, controller: str, name: str) -> str:
        h = self.v1.get(controller) or self.v2
        if h is None:
            raise InvalidArgument(f"cgroup: no {controller} hierarchy")
        return _read(self.dirs[h], name)


# -- file access ----------------------------------------------------------------------------

def _read(d: str, name: str) -> str:
    try:
        with open(os.path.join(d, name)) as f:
            return f.read()
    except OSError as e:
        raise from_oserror("read", os.path.join(d, name), e) from e


def _join_file(h: Hierarchy) -> str:
    return "tasks" if h.version == 1 else "cgroup.procs"


def _write(d: str, name: str, value: str) -> None:
    path = os.path.join(d, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise SystemError_(f"write {value!r} to", path, e.errno or errno.EIO) from e


def _has(d: str, name: str) -> bool:
    return os.path.exists(os.path.join(d, name))


def _num(v: Any, where: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise InvalidArgument(f"linux.resources.{where}: expected integer")
    return v


def _items(r: Resources, key: str) -> Iterator[tuple[str, Any]]:
    sub = r.get(key) or {}
    if not isinstance(sub, dict):
        raise InvalidArgument(f"linux.resources.{key}: expected object")
    for k, v in sub.items():
        if v is not None:
            yield k, v


# -- cgroup v1 writers -------------------------------------------------------------------

def _v1_memory(d: str, r: Resources) -> None:
    m = dict(_items(r, "memory"))
    limit, swap = m.get("limit"), m.get("swap")
    if limit is not None:
        limit = _num(limit, "memory.limit")
    if swap is not None:
        swap = _num(swap, "memory.swap")
    memsw = _has(d, "memory.memsw.limit_in_bytes")
    if swap is not None and not memsw and swap not in (-1, limit):
        raise InvalidArgument("linux.resources.memory.swap: swap accounting is off on this host")
    if limit is not None and swap is not None and memsw:
        # memsw must stay >= limit at every step: raise memsw first when it grows
        current = int(_read(d, "memory.memsw.limit_in_bytes"))
        order = [("memory.memsw.limit_in_bytes", swap), ("memory.limit_in_bytes", limit)]
        if swap != -1 and swap < current:
            order.reverse()
        if swap == -1:
            order = [("memory.limit_in_bytes", limit), ("memory.memsw.limit_in_bytes", swap)]
        for name, value in order:
            _write(d, name, str(value))
    elif limit is not None:
        _write(d, "memory.limit_in_bytes", str(limit))
    elif swap is not None and memsw:
        _write(d, "memory.memsw.limit_in_bytes", str(swap))
    if "reservation" in m:
        _write(d, "memory.soft_limit_in_bytes", str(_num(m["reservation"], "memory.reservation")))
    if "kernelTCP" in m and _has(d, "memory.kmem.tcp.limit_in_bytes"):
        _write(d, "memory.kmem.tcp.limit_in_bytes", str(_num(m["kernelTCP"], "memory.kernelTCP")))
    if "swappiness" in m:
        sw = _num(m["swappiness"], "memory.swappiness")
        if not 0 <= sw <= 100 and sw != -1:
            raise InvalidArgument(f"linux.resources.memory.swappiness: {sw} not in 0..100")
        if sw != -1:
            _write(d, "memory.swappiness", str(sw))
    if m.get("disableOOMKiller"):
        _write(d, "memory.oom_control", "1")


def _v1_cpu(d: str, r: Resources) -> None:
    c = dict(_items(r, "cpu"))
    if "shares" in c:
        _write(d, "cpu.shares", str(_num(c["shares"], "cpu.shares")))
    if "period" in c:
        _write(d, "cpu.cfs_period_us", str(_num(c["period"], "cpu.period")))
    if "quota" in c:
        _write(d, "cpu.cfs_quota_us", str(_num(c["quota"], "cpu.quota")))
    if "burst" in c and _has(d, "cpu.cfs_burst_us"):
        _write(d, "cpu.cfs_burst_us", str(_num(c["burst"], "cpu.burst")))
    if "realtimePeriod" in c:
        _write(d, "cpu.rt_period_us", str(_num(c["realtimePeriod"], "cpu.realtimePeriod")))
    if "realtimeRuntime" in c:
        _write(d, "cpu.rt_runtime_us", str(_num(c["realtimeRuntime"], "cpu.realtimeRuntime")))
    if "idle" in c and _has(d, "cpu.idle"):
        _write(d, "cpu.idle", str(_num(c["idle"], "cpu.idle")))


def _cpuset(d: str, r: Resources) -> None:
    c = dict(_items(r, "cpu"))
    if c.get("cpus"):
        _write(d, "cpuset.cpus", str(c["cpus"]))
    if c.get("mems"):
        _write(d, "cpuset.mems", str(c["mems"]))


def _v1_pids(d: str, r: Resources) -> None:
    p = dict(_items(r, "pids"))
    if "limit" in p:
        limit = _num(p["limit"], "pids.limit")
        _write(d, "pids.max", str(limit) if limit > 0 else "max")


def _dev(e: Any, where: str) -> str:
    if not isinstance(e, dict):
        raise InvalidArgument(f"linux.resources.{where}: expected object")
    return f"{_num(e.get('major'), where + '.major')}:{_num(e.get('minor'), where + '.minor')}"


_THROTTLE = {
    "throttleReadBpsDevice": ("blkio.throttle.read_bps_device", "rbps"),
    "throttleWriteBpsDevice": ("blkio.throttle.write_bps_device", "wbps"),
    "throttleReadIOPSDevice": ("blkio.throttle.read_iops_device", "riops"),
    "throttleWriteIOPSDevice": ("blkio.throttle.write_iops_device", "wiops"),
}


def _v1_blkio(d: str, r: Resources) -> None:
    b = dict(_items(r, "blockIO"))
    weight_file = "blkio.weight" if _has(d, "blkio.weight") else "blkio.bfq.weight"
    if "weight" in b:
        if not _has(d, weight_file):
            raise InvalidArgument("linux.resources.blockIO.weight: no blkio weight on this host")
        _write(d, weight_file, str(_num(b["weight"], "blockIO.weight")))
    if "leafWeight" in b:
        _write(d, "blkio.leaf_weight", str(_num(b["leafWeight"], "blockIO.leafWeight")))
    for i, e in enumerate(b.get("weightDevice") or []):
        dev = _dev(e, f"blockIO.weightDevice[{i}]")
        if e.get("weight") is not None:
            _write(d, weight_file + "_device", f"{dev} {e['weight']}")
        if e.get("leafWeight") is not None:
            _write(d, "blkio.leaf_weight_device", f"{dev} {e['leafWeight']}")
    for key, (name, _) in _THROTTLE.items():
        for i, e in enumerate(b.get(key) or []):
            dev = _dev(e, f"blockIO.{key}[{i}]")
            _write(d, name, f"{dev} {_num(e.get('rate'), f'blockIO.{key}[{i}].rate')}")


def _hugetlb(suffix: str) -> Callable[[str, Resources], None]:
    def write(d: str, r: Resources) -> None:
        for i, e in enumerate(r.get("hugepageLimits") or []):
            if not isinstance(e, dict) or not isinstance(e.get("pageSize"), str):
                raise InvalidArgument(f"linux.resources.hugepageLimits[{i}]: bad entry")
            limit = _num(e.get("limit"), f"hugepageLimits[{i}].limit")
            _write(d, f"hugetlb.{e['pageSize']}.{suffix}", str(limit))
    return write


def _v1_devices(d: str, r: Resources) -> None:
    rules = r.get("devices")
    if rules is None:
        return
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise InvalidArgument(f"linux.resources.devices[{i}]: expected object")
        kind = rule.get("type") or "a"
        major = rule.get("major")
        minor = rule.get("minor")
        access = rule.get("access") or "rwm"
        if kind not in ("a", "b", "c") or not set(access) <= set("rwm"):
            raise InvalidArgument(f"linux.resources.devices[{i}]: bad rule")
        maj = "*" if major is None or major == -1 else str(major)
        mnr = "*" if minor is None or minor == -1 else str(minor)
        line = "a" if kind == "a" else f"{kind} {maj}:{mnr} {access}"
        _write(d, "devices.allow" if rule.get("allow") else "devices.deny", line)


def _v1_network(d: str, r: Resources) -> None:
    n = dict(_items(r, "network"))
    if "classID" in n:
        _write(d, "net_cls.classid", str(_num(n["classID"], "network.classID")))
    for p in n.get("priorities") or []:
        _write(d, "net_prio.ifpriomap", f"{p['name']} {p['priority']}")


_V1_WRITERS: list[tuple[str, Callable[[str, Resources], None]]] = [
    ("memory", _v1_memory),
    ("cpu", _v1_cpu),
    ("cpuset", _cpuset),
    ("pids", _v1_pids),
    ("blkio", _v1_blkio),
    ("hugetlb", _hugetlb("limit_in_bytes")),
    ("devices", _v1_devices),
    ("net_cls", _v1_network),
]


_V2_NAMES = {"blkio": "io"}
_MUST_HAVE = {"hugetlb": "hugepageLimits", "net_cls": "network"}


# -- cgroup v2 writers -------------------------------------------------------------------

def _v2_memory(d: str, r: Resources) -> None:
    m = dict(_items(r, "memory"))
    limit = m.get("limit")
    if limit is not None:
        _write(d, "memory.max", "max" if _num(limit, "memory.limit") == -1 else str(limit))
    if m.get("swap") is not None:
        swap = _num(m["swap"], "memory.swap")
        value = "max" if swap == -1 else str(max(swap - (limit or 0), 0))
        if _has(d, "memory.swap.max"):
            _write(d, "memory.swap.max", value)
    if "reservation" in m:
        _write(d, "memory.low", str(_num(m["reservation"], "memory.reservation")))


def _v2_cpu(d: str, r: Resources) -> None:
    c = dict(_items(r, "cpu"))
    if "shares" in c:
        shares = _num(c["shares"], "cpu.shares")
        _write(d, "cpu.weight", str(1 + ((shares - 2) * 9999) // 262142) if shares else "100")
    if "quota" in c or "period" in c:
        quota = c.get("quota", -1)
        period = c.get("period", 100000)
        _write(d, "cpu.max", f"{'max' if quota in (-1, 0) else quota} {period}")
    if "idle" in c and _has(d, "cpu.idle"):
        _write(d, "cpu.idle", str(c["idle"]))


def _v2_io(d: str, r: Resources) -> None:
    b = dict(_items(r, "blockIO"))
    if "weight" in b:
        w = _num(b["weight"], "blockIO.weight")
        _write(d, "io.weight", f"default {1 + (w - 10) * 9999 // 990}")
    for key, (_, word) in _THROTTLE.items():
        for i, e in enumerate(b.get(key) or []):
            _write(d, "io.max", f"{_dev(e, f'blockIO.{key}[{i}]')} {word}={e['rate']}")


_V2_WRITERS: dict[str, Callable[[str, Resources], None]] = {
    "memory": _v2_memory,
    "cpu": _v2_cpu,
    "cpuset": _cpuset,
    "pids": _v1_pids,
    "blkio": _v2_io,
    "hugetlb": _hugetlb("max"),
}
