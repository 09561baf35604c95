"""The verbs of the runtime and the state machine of the OCI spec."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import RUNTIME, Bundle, Runtime


def _wait_status(rt: Runtime, cid: str, want: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rt.state(cid)["status"] == want:
            return
        time.sleep(0.02)
    raise AssertionError(f"{cid} never reached {want}: {rt.state(cid)}")


def test_run_prints_and_passes_exit_code(rt: Runtime, bundle: Bundle) -> None:
    p = rt.run(bundle, "echo", "Hello World!")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "Hello World!\n"
    assert rt.run(bundle, "sh", "-c", "exit 42").returncode == 42


def test_run_reports_death_by_signal(rt: Runtime, bundle: Bundle) -> None:
    bundle.args("sleep", "60")
    cid = rt.new_id()
    run = subprocess.Popen([RUNTIME, "--root", str(rt.root), "run", "--bundle",
                            str(bundle.path), cid])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if rt("state", cid).returncode == 0 and rt.state(cid)["status"] == "running":
                break
            time.sleep(0.02)
        rt("kill", cid, "KILL", check=True)
        assert run.wait(timeout=10) == 137
    finally:
        run.kill()
        run.wait()


def test_create_start_state_delete(rt: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    bundle.args("sh", "-c", "echo started > /tmp/mark; sleep 60")
    cid = rt.new_id()
    pidfile = tmp_path / "pid"
    rt("create", "--bundle", str(bundle.path), "--pid-file", str(pidfile), cid, check=True)
    st = rt.state(cid)
    assert st["status"] == "created"
    assert st["pid"] == int(pidfile.read_text())
    assert st["bundle"] == str(bundle.path) and st["id"] == cid
    assert not (bundle.rootfs / "tmp/mark").exists(), "the process ran before start"
    # the spec: deleting a container that is not stopped fails and changes nothing
    assert rt("delete", cid).returncode != 0
    assert rt.state(cid)["status"] == "created"
    rt("start", cid, check=True)
    _wait_status(rt, cid, "running")
    deadline = time.monotonic() + 5
    while not (bundle.rootfs / "tmp/mark").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (bundle.rootfs / "tmp/mark").read_text() == "started\n"
    assert rt("start", cid).returncode != 0, "a running container started twice"
    assert rt("delete", cid).returncode != 0
    rt("kill", cid, "KILL", check=True)
    _wait_status(rt, cid, "stopped")
    assert rt("kill", cid, "TERM").returncode != 0, "signalling a stopped container must fail"
    rt("delete", cid, check=True)
    assert rt("state", cid).returncode != 0


def test_duplicate_id_and_bad_bundle(rt: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    bundle.args("sleep", "60")
    cid = rt.new_id()
    rt("create", "--bundle", str(bundle.path), cid, check=True)
    p = rt("create", "--bundle", str(bundle.path), cid)
    assert p.returncode != 0 and "exists" in p.stderr
    assert rt.state(cid)["status"] == "created"
    p = rt("create", "--bundle", str(tmp_path / "nope"), rt.new_id())
    assert p.returncode != 0 and "config.json" in p.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/config.json").write_text("{not json")
    p = rt("create", "--bundle", str(tmp_path / "bad"), rt.new_id())
    assert p.returncode != 0 and "malformed JSON" in p.stderr


def test_missing_executable_fails_create(rt: Runtime, bundle: Bundle) -> None:
    bundle.args("no-such-binary")
    cid = rt.new_id()
    p = rt("create", "--bundle", str(bundle.path), cid)
    assert p.returncode != 0
    assert 'exec: "no-such-binary": executable file not found in $PATH' in p.stderr
    assert rt("state", cid).returncode != 0, "a failed create left a record"


def test_json_log_on_error(rt: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    bundle.args("no-such-binary")
    log = tmp_path / "log.json"
    p = rt("--log", str(log), "--log-format", "json", "create", "--bundle", str(bundle.path),
           rt.new_id())
    assert p.returncode != 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[-1]["level"] == "error" and "no-such-binary" in lines[-1]["msg"]


def test_exec_ps_pause_resume(rt: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    bundle.args("sleep", "60")
    cid = rt.new_id()
    rt("run", "--detach", "--bundle", str(bundle.path), cid, check=True)
    p = rt("exec", cid, "sh", "-c", "echo $$ in $(hostname); exit 5")
    assert p.returncode == 5 and p.stdout.endswith(" in matou\n")
    pidfile = tmp_path / "exec.pid"
    proc_json = tmp_path / "process.json"
    process = dict(bundle.spec["process"], args=["sleep", "30"])
    proc_json.write_text(json.dumps(process))
    rt("exec", "--process", str(proc_json), "--detach", "--pid-file", str(pidfile), cid,
       check=True)
    exec_pid = int(pidfile.read_text())
    pids = json.loads(rt("ps", "--format", "json", cid, check=True).stdout)
    assert rt.state(cid)["pid"] in pids and exec_pid in pids
    rt("pause", cid, check=True)
    assert rt.state(cid)["status"] == "paused"
    assert rt("exec", cid, "true").returncode != 0, "exec into a paused container"
    rt("resume", cid, check=True)
    assert rt.state(cid)["status"] == "running"
    rt("kill", "--all", cid, "KILL", check=True)
    _wait_status(rt, cid, "stopped")


def test_update_resources(rt: Runtime, bundle: Bundle) -> None:
    bundle.args("sleep", "60")
    bundle.spec["linux"]["resources"]["memory"] = {"limit": 64 << 20}
    bundle.spec["linux"]["resources"]["pids"] = {"limit": 50}
    bundle.write()
    cid = rt.new_id()
    rt("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    mem = Path(f"/sys/fs/cgroup/memory/{cid}/memory.limit_in_bytes")
    pids = Path(f"/sys/fs/cgroup/pids/{cid}/pids.max")
    assert int(mem.read_text()) == 64 << 20 and pids.read_text().strip() == "50"
    rt("update", "--memory", "128m", "--pids-limit", "70", cid, check=True)
    assert int(mem.read_text()) == 128 << 20 and pids.read_text().strip() == "70"
    rt("update", "--resources", "-", cid, input=json.dumps({"pids": {"limit": 90}}), check=True)
    assert pids.read_text().strip() == "90"


def test_list_features_spec(rt: Runtime, bundle: Bundle, tmp_path: Path) -> None:
    bundle.args("sleep", "60")
    cid = rt.new_id()
    rt("create", "--bundle", str(bundle.path), cid, check=True)
    rows = json.loads(rt("list", "--format", "json", check=True).stdout)
    assert [r["id"] for r in rows] == [cid] and rows[0]["status"] == "created"
    assert cid in rt("list", check=True).stdout
    feats = json.loads(rt("features", check=True).stdout)
    assert "CAP_SYS_ADMIN" in feats["linux"]["capabilities"]
    assert "SCMP_ACT_ERRNO" in feats["linux"]["seccomp"]["actions"]
    os.chdir(tmp_path)
    rt("spec", check=True)
    spec = json.loads((tmp_path / "config.json").read_text())
    assert spec["process"]["args"] == ["sh"] and spec["root"]["path"] == "rootfs"
    assert rt("spec").returncode != 0, "spec overwrote an existing config.json"


def test_bad_resources_fail_create_cleanly(rt: Runtime, bundle: Bundle) -> None:
    bundle.spec["linux"]["resources"]["memory"] = {"swappiness": 300}
    cid = rt.new_id()
    p = rt("create", "--bundle", str(bundle.write().path), cid, timeout=20)
    assert p.returncode != 0 and "swappiness" in p.stderr
    assert rt("state", cid).returncode != 0
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{cid}"))


def test_no_process_until_start(rt: Runtime, bundle: Bundle) -> None:
    del bundle.spec["process"]
    cid = rt.new_id()
    rt("create", "--bundle", str(bundle.write().path), cid, check=True)
    assert rt.state(cid)["status"] == "created"
    p = rt("start", cid)
    assert p.returncode != 0 and "no process" in p.stderr
    _wait_status(rt, cid, "stopped")
    rt("delete", cid, check=True)


def test_host_namespaces_when_none_asked(rt: Runtime, bundle: Bundle) -> None:
    bundle.spec["linux"]["namespaces"] = []
    bundle.spec.pop("hostname")
    bundle.spec["linux"]["maskedPaths"] = ["/proc/kcore"]
    bundle.args("sleep", "60")
    cid = rt.new_id()
    rt("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    pid = rt.state(cid)["pid"]
    for ns in ("net", "mnt", "pid", "ipc", "uts"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/self/ns/{ns}")
    assert os.readlink(f"/proc/{pid}/root") == str(bundle.rootfs)
    with open("/proc/self/mountinfo") as f:
        assert str(bundle.rootfs) + "/proc" in f.read()
    rt("delete", "--force", cid, check=True)
    with open("/proc/self/mountinfo") as f:
        assert str(bundle.rootfs) not in f.read(), "delete left the container's mounts"


@pytest.mark.parametrize("nnp", [True, False])
def test_native_exec_leaves_the_process_as_the_python_one_does(rt: Runtime, bundle: Bundle,
                                                              nnp: bool) -> None:
    """matou-exec (C) and the Python child do the same steps; what the process ends up
    with — ids, groups, capabilities, seccomp, no_new_privs, umask, cwd, cgroup,
    namespaces, limits, open fds — must not tell them apart, with no_new_privs on (seccomp
    loaded last) and off (loaded before the capabilities go)."""
    assert os.access(os.path.join(os.path.dirname(RUNTIME), "matou-exec"), os.X_OK)
    bundle.spec["process"]["noNewPrivileges"] = nnp
    bundle.spec["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 7],
                                      "umask": 0o027}
    bundle.spec["process"]["cwd"] = "/tmp"
    bundle.spec["process"]["capabilities"]["ambient"] = ["CAP_KILL"]
    bundle.spec["process"]["capabilities"]["inheritable"] = ["CAP_KILL"]
    bundle.spec["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO"}]}
    bundle.args("sleep", "60")
    cid = rt.new_id()
    rt("run", "--detach", "--bundle", str(bundle.path), cid, check=True)
    proc_json = bundle.path / "exec.json"
    probe = ("grep -E '^(Uid|Gid|Groups|Cap|NoNewPrivs|Seccomp)' /proc/self/status; "
             "umask; pwd; cat /proc/self/cgroup; readlink /proc/self/ns/*; ulimit -n; "
             "ls /proc/self/fd; echo $PATH")
    proc_json.write_text(json.dumps(dict(bundle.spec["process"], args=["sh", "-c", probe])))
    native = rt("exec", "--process", str(proc_json), cid)
    python = rt("exec", "--process", str(proc_json), cid,
                env={**os.environ, "MATOU_EXEC": "none"})
    assert native.returncode == python.returncode == 0, native.stderr + python.stderr
    assert native.stdout == python.stdout
    out = native.stdout
    assert "Uid:\t1000\t1000\t1000\t1000" in out and "Groups:\t5 7" in out
    assert f"NoNewPrivs:\t{int(nnp)}" in out and "Seccomp:\t2" in out
    assert "CapAmb:\t0000000000000020" in out  # CAP_KILL
    assert "\n0027\n/tmp\n" in out
    for argv, text in ((["nosuch"], 'exec: "nosuch": executable file not found in $PATH'),
                       (["/nosuch"], 'exec: "/nosuch": stat /nosuch: no such file')):
        proc_json.write_text(json.dumps(dict(bundle.spec["process"], args=argv)))
        for env in ({}, {"MATOU_EXEC": "none"}):
            p = rt("exec", "--process", str(proc_json), cid, env={**os.environ, **env})
            assert p.returncode != 0 and text in p.stderr, (env, p.stderr)
    rt("kill", cid, "KILL", check=True)
