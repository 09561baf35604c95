"""What the container sees: namespaces, identity, capabilities, limits, filesystem, hooks."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Bundle, Runtime


def _out(rt: Runtime, b: Bundle, script: str) -> str:
    p = rt.run(b, "sh", "-c", script)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    return p.stdout


def test_namespaces_are_new(rt: Runtime, bundle: Bundle) -> None:
    out = _out(rt, bundle, "echo $$; for n in net mnt ipc uts cgroup; do "
                           "readlink /proc/self/ns/$n; done")
    lines = out.split()
    assert lines[0] == "1", "the process is not pid 1 of a new pid namespace"
    for link in lines[1:]:
        kind = link.split(":")[0]
        assert link != os.readlink(f"/proc/self/ns/{kind}"), f"{kind} namespace shared"


def test_join_namespace_by_path(rt: Runtime, bundle: Bundle) -> None:
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        deadline = time.monotonic() + 5
        while os.readlink(path) == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        bundle.spec["linux"]["namespaces"] = [
            n if n["type"] != "network" else {"type": "network", "path": path}
            for n in bundle.spec["linux"]["namespaces"]]
        bundle.write()
        out = _out(rt, bundle, "readlink /proc/self/ns/net")
        assert out.strip() == os.readlink(path)
        bundle.spec["linux"]["namespaces"][1]["path"] = "/proc/self/ns/ipc"
        p = rt.run(bundle.write(), "true")
        assert p.returncode != 0 and "not a network ns" in p.stderr
    finally:
        holder.kill()
        holder.wait()


def test_identity_and_environment(rt: Runtime, bundle: Bundle) -> None:
    p = bundle.spec["process"]
    p["user"] = {"uid": 65534, "gid": 65534, "additionalGids": [5, 6], "umask": 0o077}
    p["env"] = ["PATH=/bin:/usr/bin", "FOO=bar baz"]
    p["cwd"] = "/tmp"
    bundle.spec["hostname"] = "box"
    bundle.spec["domainname"] = "example.test"
    out = _out(rt, bundle, 'id -u; id -g; id -G; umask; pwd; echo "$FOO"; hostname; '
                           "cat /proc/sys/kernel/domainname")
    assert out.split("\n")[:8] == ["65534", "65534", "65534 5 6", "0077", "/tmp", "bar baz",
                                   "box", "example.test"]


def test_capabilities_all_five_sets(rt: Runtime, bundle: Bundle) -> None:
    caps = bundle.spec["process"]["capabilities"]
    caps.update(bounding=["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"],
                effective=["CAP_KILL", "CAP_CHOWN"], permitted=["CAP_KILL", "CAP_CHOWN"],
                inheritable=["CAP_KILL"], ambient=["CAP_KILL"])
    bundle.spec["process"]["noNewPrivileges"] = True
    out = _out(rt, bundle, "grep -E '^(Cap|NoNewPrivs)' /proc/self/status")
    got = dict(line.split(":\t") for line in out.splitlines())
    kill, chown, raw = 1 << 5, 1 << 0, 1 << 13
    assert int(got["CapBnd"], 16) == kill | chown | raw
    assert int(got["CapEff"], 16) == kill | chown
    assert int(got["CapPrm"], 16) == kill | chown
    assert int(got["CapInh"], 16) == kill
    assert int(got["CapAmb"], 16) == kill
    assert got["NoNewPrivs"] == "1"


def test_unknown_capability_is_an_error(rt: Runtime, bundle: Bundle) -> None:
    bundle.spec["process"]["capabilities"]["bounding"].append("CAP_MAKE_COFFEE")
    p = rt.run(bundle, "true")
    assert p.returncode != 0 and "CAP_MAKE_COFFEE" in p.stderr


def test_rlimits_and_oom_score(rt: Runtime, bundle: Bundle) -> None:
    bundle.spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
                                         {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    bundle.spec["process"]["oomScoreAdj"] = 123
    out = _out(rt, bundle, "ulimit -n; ulimit -Hn; ulimit -c; cat /proc/self/oom_score_adj")
    assert out.split() == ["321", "654", "0", "123"]


def test_sysctl_namespaced_only(rt: Runtime, bundle: Bundle) -> None:
    bundle.spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}
    out = _out(rt, bundle, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni")
    assert out.split() == ["1", "1234"]
    bundle.spec["linux"]["sysctl"] = {"kernel.core_pattern": "|/tmp/pwn"}
    p = rt.run(bundle, "true")
    assert p.returncode != 0 and "kernel.core_pattern" in p.stderr


def test_masked_and_readonly_paths(rt: Runtime, bundle: Bundle) -> None:
    out = _out(rt, bundle, "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
                           "echo 1 > /proc/sys/kernel/shmmni && echo writable || echo ro")
    assert out.split() == ["0", "0", "ro"]


def test_readonly_root_and_mount_options(rt: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    (src / "f").write_text("host data")
    bundle.spec["root"]["readonly"] = True
    bundle.spec["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                                  "options": ["rbind", "ro", "nosuid"]})
    bundle.spec["mounts"].append({"destination": "/scratch", "type": "tmpfs",
                                  "source": "tmpfs", "options": ["size=1m", "noexec"]})
    out = _out(rt, bundle, "cat /data/f; echo; touch /x 2>/dev/null || echo root-ro; "
                           "touch /data/y 2>/dev/null || echo bind-ro; "
                           "touch /scratch/z && echo tmpfs-rw; grep -E ' /(data|scratch) ' "
                           "/proc/self/mountinfo")
    lines = out.splitlines()
    assert lines[:4] == ["host data", "root-ro", "bind-ro", "tmpfs-rw"]
    assert any("/data" in x and "ro," in x and "nosuid" in x for x in lines[4:])
    assert any("/scratch" in x and "noexec" in x for x in lines[4:])


def test_devices_from_spec(rt: Runtime, bundle: Bundle) -> None:
    bundle.spec["linux"]["devices"] = [{"path": "/dev/mydev", "type": "c", "major": 1,
                                        "minor": 5, "fileMode": 0o664, "uid": 7, "gid": 8}]
    out = _out(rt, bundle, "stat -c '%t:%T %a %u %g' /dev/mydev; head -c 3 /dev/mydev | wc -c")
    assert out.split("\n")[:2] == ["1:5 664 7 8", "3"]


def test_seccomp_filter(rt: Runtime, bundle: Bundle) -> None:
    bundle.spec["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}],
    }
    out = _out(rt, bundle, "mkdir /tmp/d 2>&1; echo rc=$?")
    assert "Operation not permitted" in out and "rc=1" in out


def test_seccomp_denying_getcwd_still_starts(rt: Runtime, bundle: Bundle) -> None:
    bundle.spec["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}],
    }
    p = rt.run(bundle, "sh", "-c", "echo started")
    assert p.returncode == 0 and p.stdout == "started\n", p.stderr


def test_user_namespace_mapping(rt: Runtime, bundle: Bundle) -> None:
    # the mapped root must be able to reach its rootfs: open the way from / to it
    p = bundle.rootfs
    while p != p.parent:
        p = p.parent
        os.chmod(p, os.stat(p).st_mode | 0o005)
    os.chown(bundle.rootfs, 100000, 100000)
    bundle.spec["linux"]["namespaces"].append({"type": "user"})
    bundle.spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.spec["mounts"] = [m for m in bundle.spec["mounts"] if m["type"] != "sysfs"
                             and m["type"] != "cgroup"]
    out = _out(rt, bundle, "cat /proc/self/uid_map /proc/self/gid_map; id -u")
    assert out.split() == ["0", "100000", "65536", "0", "100000", "65536", "0"]


def test_cgroup_limits(rt: Runtime, bundle: Bundle) -> None:
    r = bundle.spec["linux"]["resources"]
    r["memory"] = {"limit": 32 << 20}
    r["pids"] = {"limit": 20}
    r["cpu"] = {"shares": 512, "quota": 50000, "period": 100000}
    out = _out(rt, bundle, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                           "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares "
                           "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    assert out.split() == [str(32 << 20), "20", "512", "50000"]


def test_hooks_see_state(rt: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"

    def hook(name: str) -> dict[str, object]:
        return {"path": "/bin/sh",
                "args": ["sh", "-c", f"cat >> {log}; echo ' {name}' >> {log}"]}

    bundle.spec["hooks"] = {k: [hook(k)] for k in ("prestart", "createRuntime",
                                                    "poststart", "poststop")}
    p = rt.run(bundle, "true")
    assert p.returncode == 0, p.stderr
    seen = [line.rsplit(" ", 1) for line in log.read_text().splitlines()]
    assert [name for _, name in seen] == ["prestart", "createRuntime", "poststart", "poststop"]
    states = [json.loads(s) for s, _ in seen]
    assert [s["status"] for s in states] == ["created", "creating", "running", "stopped"]
    assert all(s["bundle"] == str(bundle.path) for s in states)
    assert states[0]["pid"] > 0


def test_failing_poststart_and_poststop_hooks_only_warn(rt: Runtime, bundle: Bundle,
                                                       tmp_path: Path) -> None:
    log = tmp_path / "ran"
    ok = {"path": "/bin/sh", "args": ["sh", "-c", f"echo ran >> {log}"]}
    bundle.spec["hooks"] = {"poststart": [{"path": "/bin/false"}, ok],
                            "poststop": [{"path": "/bin/false"}, ok]}
    p = rt.run(bundle, "true")
    assert p.returncode == 0, p.stderr
    assert log.read_text() == "ran\nran\n"
    assert p.stderr.count("level=warning") == 2


def test_failing_hook_fails_create(rt: Runtime, bundle: Bundle) -> None:
    bundle.spec["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    p = rt.run(bundle, "true")
    assert p.returncode != 0 and "createRuntime" in p.stderr


@pytest.mark.parametrize("prop", ["rshared", "rslave", "rprivate"])
def test_rootfs_propagation(rt: Runtime, bundle: Bundle, prop: str) -> None:
    bundle.spec["linux"]["rootfsPropagation"] = prop
    # a shared mount on the host side, so that a slave has a master to follow
    subprocess.run(["mount", "--bind", str(bundle.path), str(bundle.path)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(bundle.path)], check=True)
        out = _out(rt, bundle, "awk '$5 == \"/\"' /proc/self/mountinfo")
    finally:
        subprocess.run(["umount", "-l", str(bundle.path)], check=True)
    if prop == "rshared":
        assert "shared:" in out
    elif prop == "rslave":
        assert "master:" in out
    else:
        assert "shared:" not in out and "master:" not in out


def test_personality(rt: Runtime, bundle: Bundle) -> None:
    bundle.spec["linux"]["personality"] = {"domain": "LINUX32"}
    assert _out(rt, bundle, "uname -m").strip() in ("i686", "i386", "armv8l")
    bundle.spec["linux"]["personality"] = {"domain": "BSD"}
    p = rt.run(bundle, "true")
    assert p.returncode != 0 and "personality" in p.stderr


def test_signals_start_at_their_defaults(rt: Runtime, bundle: Bundle) -> None:
    # the runtime (Python) ignores SIGPIPE; the container must not inherit that
    p = rt.run(bundle, "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status")
    out = p.stdout
    assert out.split() == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"]
