"""The cgroup manager against a fake hierarchy tree on a plain directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from matou.cgroups.layout import Hierarchy
from matou.cgroups.manager import Manager, resolve_path
from matou.errors import InvalidArgument, Unsupported


def test_resolve_path() -> None:
    assert resolve_path("", "c1") == "/c1"
    assert resolve_path("/a/b/../c", "c1") == "/a/c"
    assert resolve_path("machine.slice:matou:c1", "c1") == "/machine.slice/matou-c1.scope"
    assert resolve_path("a-b.slice:p:n", "c1") == "/a.slice/a-b.slice/p-n.scope"


def _tree(tmp_path: Path) -> tuple[Manager, dict[str, Path]]:
    files = {
        "memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
                   "memory.soft_limit_in_bytes", "memory.swappiness", "memory.oom_control"],
        "cpu": ["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"],
        "pids": ["pids.max"],
        "unified": ["hugetlb.2MB.max"],
    }
    layout = []
    dirs = {}
    for name, names in files.items():
        mnt = tmp_path / name
        d = mnt / "ctr"
        d.mkdir(parents=True)
        for f in [*names, "cgroup.procs"]:
            (d / f).write_text("0\n")
        (mnt / "cgroup.subtree_control").write_text("")
        dirs[name] = d
        if name == "unified":
            layout.append(Hierarchy(str(mnt), 2, frozenset({"hugetlb"}), ""))
        else:
            layout.append(Hierarchy(str(mnt), 1, frozenset({name}), name))
    return Manager("/ctr", layout=tuple(layout)), dirs


def test_set_routes_v1_and_skips_hybrid_v2(tmp_path: Path) -> None:
    m, d = _tree(tmp_path)
    (d["memory"] / "memory.memsw.limit_in_bytes").write_text("9223372036854771712\n")
    m.set({"memory": {"limit": 100, "swap": 200, "swappiness": 10, "disableOOMKiller": True},
           "cpu": {"shares": 512, "quota": 5000, "period": 10000},
           "pids": {"limit": 0}})
    assert (d["memory"] / "memory.limit_in_bytes").read_text() == "100"
    assert (d["memory"] / "memory.memsw.limit_in_bytes").read_text() == "200"
    assert (d["memory"] / "memory.oom_control").read_text() == "1"
    assert (d["cpu"] / "cpu.cfs_quota_us").read_text() == "5000"
    assert (d["pids"] / "pids.max").read_text() == "max"
    # hybrid: cgroup2 only tracks processes, its controllers stay untouched, and a limit
    # for a controller with no v1 hierarchy is refused rather than dropped
    with pytest.raises(Unsupported, match="hugepageLimits"):
        m.set({"hugepageLimits": [{"pageSize": "2MB", "limit": 4096}]})
    assert (d["unified"] / "hugetlb.2MB.max").read_text() == "0\n"


def test_pure_v2(tmp_path: Path) -> None:
    mnt = tmp_path / "cg2"
    d = mnt / "ctr"
    d.mkdir(parents=True)
    for f in ("memory.max", "cpu.max", "cpu.weight", "pids.max", "cgroup.procs"):
        (d / f).write_text("0\n")
    (mnt / "cgroup.subtree_control").write_text("")
    m = Manager("/ctr", layout=(Hierarchy(str(mnt), 2, frozenset({"memory", "cpu", "pids"}),
                                          ""),))
    m.set({"memory": {"limit": -1}, "cpu": {"shares": 1024, "quota": 20000, "period": 100000},
           "pids": {"limit": 5}})
    assert (d / "memory.max").read_text() == "max"
    assert (d / "cpu.max").read_text() == "20000 100000"
    assert (d / "cpu.weight").read_text() == "39"
    assert (d / "pids.max").read_text() == "5"


def test_bad_values(tmp_path: Path) -> None:
    m, _ = _tree(tmp_path)
    with pytest.raises(InvalidArgument, match="swappiness"):
        m.set({"memory": {"swappiness": 300}})
    with pytest.raises(InvalidArgument, match="expected integer"):
        m.set({"pids": {"limit": "lots"}})
