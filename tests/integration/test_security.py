"""Regression tests for runtime escapes: each names the CVE whose class it guards."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path

import pytest

from tests.integration.conftest import Bundle, Runtime


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _runtime_binaries() -> list[str]:
    """The interpreter and the shared libraries a runtime process maps."""
    out = {os.path.realpath(sys.executable)}
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith("/") and ".so" in parts[5]:
                out.add(parts[5])
    return sorted(p for p in out if os.path.isfile(p))


def test_cve_2019_5736_runtime_exe_not_reachable(rt: Runtime, bundle: Bundle) -> None:
    """A created container's init is still the runtime (an interpreter): nothing inside
    may open its /proc/PID/exe, fds or root, for reading or writing."""
    before = {p: _sha(p) for p in _runtime_binaries()}
    bundle.args("true")
    cid = rt.new_id()
    rt("create", "--bundle", str(bundle.path), cid, check=True)
    p = rt("exec", cid, "sh", "-c",
           "cat /proc/1/exe >/dev/null 2>&1 && echo READ-EXE; "
           "(exec 3<>/proc/1/exe) 2>/dev/null && echo OPENED-EXE; "
           "readlink /proc/1/fd/0 >/dev/null 2>&1 && echo READLINK-FD; "
           "cat /proc/1/fd/0 </dev/null >/dev/null 2>&1 && echo OPENED-FD; "
           "ls /proc/1/root/ >/dev/null 2>&1 && echo LISTED-ROOT; "
           "ls /proc/1/cwd/ >/dev/null 2>&1 && echo LISTED-CWD; "
           "ls /proc/1/map_files/ 2>/dev/null | grep -q . && echo LISTED-MAPS; echo done")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "done\n"
    after = {path: _sha(path) for path in before}
    assert after == before


def test_cve_2019_5736_racing_attacker(rt: Runtime, bundle: Bundle) -> None:
    """A container that keeps trying to open every /proc/*/exe for writing while execs
    come and go never succeeds, and no byte of the runtime changes."""
    before = {p: _sha(p) for p in _runtime_binaries()}
    bundle.args("sh", "-c",
                "while :; do for p in /proc/[0-9]*; do [ $p = /proc/$$ ] && continue; "
                "(exec 3<>$p/exe) 2>/dev/null && echo $p >> /tmp/opened; "
                "done; done")
    cid = rt.new_id()
    rt("run", "-d", "--bundle", str(bundle.path), cid, check=True)

    def execs() -> None:
        for _ in range(15):
            rt("exec", cid, "true", timeout=30)

    threads = [threading.Thread(target=execs) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rt("kill", cid, "KILL", check=True)
    assert not (bundle.rootfs / "tmp/opened").exists(), (
        (bundle.rootfs / "tmp/opened").read_text())
    assert {path: _sha(path) for path in before} == before


@pytest.mark.parametrize("fd", range(3, 21))
def test_cve_2024_21626_cwd_through_leaked_fd(rt: Runtime, bundle: Bundle, fd: int) -> None:
    bundle.spec["process"]["cwd"] = f"/proc/self/fd/{fd}"
    bundle.args("sh", "-c", "echo ESCAPED; ls ../../../../etc/hostname")
    # give the runtime host directory fds to leak, as a careless caller would
    dirs = [os.open("/", os.O_RDONLY | os.O_DIRECTORY) for _ in range(6)]
    try:
        p = rt("run", "--bundle", str(bundle.path), rt.new_id(), pass_fds=dirs)
    finally:
        for d in dirs:
            os.close(d)
    assert "ESCAPED" not in p.stdout
    assert p.returncode != 0


def test_no_host_fd_reaches_the_container(rt: Runtime, bundle: Bundle) -> None:
    dirs = [os.open("/", os.O_RDONLY | os.O_DIRECTORY) for _ in range(4)]
    try:
        p = rt.run(bundle, "sh", "-c", "ls /proc/self/fd")
        cid = rt.new_id()
        bundle.args("sleep", "60")
        rt("run", "-d", "--bundle", str(bundle.path), cid, pass_fds=dirs, check=True)
        q = rt("exec", cid, "ls", "/proc/self/fd", pass_fds=dirs)
        init = rt("exec", cid, "ls", "/proc/1/fd")
    finally:
        for d in dirs:
            os.close(d)
    # ls itself holds one fd (3) on the directory it lists
    assert p.stdout.split() == ["0", "1", "2", "3"], p.stdout
    assert q.stdout.split() == ["0", "1", "2", "3"], q.stdout
    assert init.stdout.split() == ["0", "1", "2"], init.stdout


def test_cve_2025_31133_devnull_symlink_does_not_defeat_masks(rt: Runtime,
                                                              bundle: Bundle) -> None:
    with open("/proc/sys/kernel/core_pattern") as f:
        core_before = f.read()
    # no /dev tmpfs: the rootfs's own /dev is used, and its null is a trap
    bundle.spec["mounts"] = [m for m in bundle.spec["mounts"]
                             if not m["destination"].startswith("/dev")]
    bundle.spec["linux"]["readonlyPaths"] = []
    dev = bundle.rootfs / "dev"
    (dev / "null").unlink(missing_ok=True)
    os.symlink("/proc/sys/kernel/core_pattern", dev / "null")
    p = rt.run(bundle, "sh", "-c",
               "echo '|/tmp/pwned' > /proc/timer_list; wc -c < /proc/timer_list; "
               "grep ' /proc/timer_list ' /proc/self/mountinfo")
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() == core_before
    assert p.returncode == 0, p.stderr
    size, mountinfo = p.stdout.split("\n", 1)
    assert size == "0"
    assert " - proc " not in mountinfo, mountinfo


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    d = tmp_path / "host-victim"
    d.mkdir()
    return d


def test_hostile_config_stays_in_rootfs(rt: Runtime, bundle: Bundle, host_dir: Path,
                                        tmp_path: Path) -> None:
    src = tmp_path / "srcfile"
    src.write_text("x")
    os.symlink(str(host_dir), bundle.rootfs / "evil")
    os.symlink("../../../../../../../../" + str(host_dir).lstrip("/"), bundle.rootfs / "rel")
    bundle.spec["mounts"] += [
        {"destination": "/evil/planted", "type": "bind", "source": str(src),
         "options": ["bind"]},
        {"destination": "/evil/sub", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/rel/relsub", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/../../../../../../" + str(host_dir).lstrip("/") + "/dotdot",
         "type": "tmpfs", "source": "tmpfs"},
    ]
    bundle.spec["linux"]["devices"] = [
        {"path": "/dev/../../../../../../" + str(host_dir).lstrip("/") + "/devnode",
         "type": "c", "major": 1, "minor": 3},
    ]
    p = rt.run(bundle, "sh", "-c", "cat /evil/planted; echo; ls /evil")
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(host_dir)) == [], "the runtime wrote outside the rootfs"
    inside = bundle.rootfs / str(host_dir).lstrip("/")
    assert {"planted", "sub", "relsub", "dotdot", "devnode"} <= set(os.listdir(inside))
    assert p.stdout.startswith("x\n")


def test_symlink_loop_in_rootfs_is_an_error(rt: Runtime, bundle: Bundle) -> None:
    os.symlink("loop2", bundle.rootfs / "loop1")
    os.symlink("loop1", bundle.rootfs / "loop2")
    bundle.spec["mounts"].append({"destination": "/loop1/x", "type": "tmpfs",
                                  "source": "tmpfs"})
    p = rt.run(bundle, "true")
    assert p.returncode != 0 and "ELOOP" in p.stderr


def test_proc_mount_on_symlink_refused(rt: Runtime, bundle: Bundle, host_dir: Path) -> None:
    os.rmdir(bundle.rootfs / "proc")
    os.symlink(str(host_dir), bundle.rootfs / "proc")
    p = rt.run(bundle, "true")
    assert p.returncode != 0 and "symlink" in p.stderr
    assert os.listdir(host_dir) == []
