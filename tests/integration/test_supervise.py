"""The native supervisor (matou-supervise) that a container's shim becomes once the
container runs: it is what stays resident, it writes the same json-file log as the Python
shim (invalid UTF-8 replaced, lines split at 16 KiB, rotation), and a daemon without it
still runs containers (the shim goes on serving in Python)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from matou.shim.shim import supervisor
from tests.integration.matoud import Daemon, clean_up

pytestmark = pytest.mark.skipif(supervisor() is None, reason="matou-supervise not built")


def _supervisor_of(d: Daemon, cid: str) -> str:
    pid = int(d.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout)
    with open(f"/proc/{pid}/status") as f:
        ppid = next(int(line.split()[1]) for line in f if line.startswith("PPid:"))
    return os.readlink(f"/proc/{ppid}/exe")


def test_the_running_container_is_supervised_natively(daemon: Daemon,
                                                      busybox_archive: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    cid = d.docker("run", "-d", "busybox", "sleep", "600").stdout.strip()
    assert os.path.basename(_supervisor_of(d, cid)) == "matou-supervise"
    # everything a client asks of a running container still works through it
    assert d.docker("exec", cid, "echo", "hi").stdout == "hi\n"
    d.docker("pause", cid)
    d.docker("unpause", cid)
    d.docker("kill", "-s", "TERM", cid)  # sleep as pid 1 ignores TERM: still running
    time.sleep(0.2)
    assert d.docker("inspect", "-f", "{{.State.Running}}", cid).stdout == "true\n"
    d.docker("kill", cid)
    assert d.docker("wait", cid).stdout == "137\n"


def test_native_log_matches_the_python_writer(daemon: Daemon, busybox_archive: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    script = ("printf 'ok \\303\\251t\\303\\251\\n'; printf 'bad \\377\\376 end\\n'; "
              "printf 'tab\\tquote\"back\\\\slash\\n' >&2; "
              "i=0; while [ $i -lt 2500 ]; do printf 0123456789abcdef; i=$((i+1)); done")
    cid = d.docker("run", "-d", "busybox", "sh", "-c", script).stdout.strip()
    d.docker("wait", cid)
    out = subprocess.run(["docker", "-H", d.host, "logs", cid], capture_output=True,
                         timeout=60)
    assert out.stderr == b'tab\tquote"back\\slash\n'
    lines = out.stdout.split(b"\n")
    assert lines[0] == "ok été".encode()
    assert lines[1] == "bad \ufffd\ufffd end".encode()
    assert lines[2] == b"0123456789abcdef" * 2500  # 40000 bytes, logged as 16 KiB pieces
    log = Path(d.docker("inspect", "-f", "{{.LogPath}}", cid).stdout.strip())
    assert len(log.read_text().splitlines()) == 2 + 1 + 3


def test_native_log_rotation(daemon: Daemon, busybox_archive: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    cid = d.docker("run", "-d", "--log-opt", "max-size=10k", "--log-opt", "max-file=3",
                   "busybox", "sh", "-c",
                   "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done"
                   ).stdout.strip()
    d.docker("wait", cid)
    log = Path(d.docker("inspect", "-f", "{{.LogPath}}", cid).stdout.strip())
    assert Path(f"{log}.1").exists() and Path(f"{log}.2").exists()
    assert not Path(f"{log}.3").exists()
    assert log.stat().st_size <= 10_000
    lines = d.docker("logs", cid).stdout.splitlines()
    assert lines[-1] == "line 1999" and len(lines) < 2000  # the oldest rotated away


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")
def test_without_the_supervisor_the_shim_serves(tmp_path: Path, busybox_archive: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATOU_SUPERVISE", "none")
    d = Daemon(tmp_path)
    d.start()
    try:
        d.docker("load", "-i", str(busybox_archive))
        cid = d.docker("run", "-d", "--network", "none", "busybox", "sh", "-c",
                       "echo started; exec sleep 600").stdout.strip()
        assert "python" in os.path.basename(_supervisor_of(d, cid))
        assert d.docker("exec", cid, "echo", "hi").stdout == "hi\n"
        assert d.docker("logs", cid).stdout == "started\n"
        d.docker("rm", "-f", cid)
    finally:
        clean_up(d)


def test_exec_helpers_end_with_their_exec(daemon: Daemon, busybox_archive: Path) -> None:
    d = daemon

    def engine_processes() -> list[str]:
        return subprocess.run(["pgrep", "-f", f"matoud -H {d.host} "], capture_output=True,
                              text=True).stdout.split()

    d.docker("load", "-i", str(busybox_archive))
    assert len(engine_processes()) == 1  # no fork server until a container needs one
    cid = d.docker("run", "-d", "busybox", "sleep", "600").stdout.strip()
    assert d.docker("exec", cid, "nosuchcmd", check=False).returncode == 126
    assert d.docker("exec", cid, "sh", "-c", "exit 7", check=False).returncode == 7
    rundir = d.run / "containers" / cid
    # each helper recorded its exit before its stream ended, and the CLI's inspect took
    # the record: nothing is left behind
    assert not list(rundir.glob("exec-*.json"))
    d.docker("exec", "-d", cid, "sleep", "1")
    deadline = time.monotonic() + 10
    while list(rundir.glob("exec-*.sock")):  # each helper removes its socket as it ends
        assert time.monotonic() < deadline, list(rundir.glob("exec-*.sock"))
        time.sleep(0.1)
    assert len(engine_processes()) == 2  # matoud and its fork server: no helper waiting
