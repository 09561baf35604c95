"""matoud as the real docker CLI sees it: version, info, images, errors, non-root access
through the docker group, and a daemon killed with -9 losing nothing."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from matou.images import create
from tests.integration.matoud import MATOUD, Daemon


def test_version_info_ping(daemon: Daemon) -> None:
    v = json.loads(daemon.docker("version", "--format", "{{json .Server}}").stdout)
    assert v["ApiVersion"] == "1.50" and v["MinAPIVersion"] == "1.24"
    assert v["Os"] == "linux"
    info = json.loads(daemon.docker("info", "--format", "{{json .}}").stdout)
    assert info["OSType"] == "linux" and info["DockerRootDir"] == str(daemon.data)
    status, body, head = daemon.http("GET", "/_ping")
    assert status == 200 and body == b"OK"
    assert "api-version: 1.50" in head.lower() and "ostype: linux" in head.lower()
    assert daemon.http("GET", "/v1.12/version")[0] == 400
    assert b"too new" in daemon.http("GET", "/v1.99/version")[1]
    assert daemon.http("GET", "/v1.41/version")[0] == 200
    status, body, _ = daemon.http("GET", "/no/such/endpoint")
    assert status == 404 and json.loads(body) == {"message": "page not found"}


def test_image_commands(daemon: Daemon, busybox_archive: Path, tmp_path: Path) -> None:
    out = daemon.docker("load", "-i", str(busybox_archive)).stdout
    assert "Loaded image: busybox:latest" in out
    image_id = daemon.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    daemon.docker("tag", "busybox", "localhost:5000/team/bb:v1")
    rows = daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    assert f"busybox:latest {image_id[7:19]}" in rows
    assert f"localhost:5000/team/bb:v1 {image_id[7:19]}" in rows
    assert daemon.docker("images", "-q", "--filter", "reference=busybox").stdout.split() == [
        image_id[7:19]]
    hist = daemon.docker("history", "--no-trunc", "--format", "{{.ID}}", "busybox").stdout
    assert hist.split()[0] == image_id
    saved = tmp_path / "saved.tar"
    daemon.docker("save", "-o", str(saved), "busybox")
    daemon.docker("rmi", "localhost:5000/team/bb:v1")
    p = daemon.docker("rmi", "busybox")
    assert f"Deleted: {image_id}" in p.stdout
    assert daemon.docker("image", "inspect", "busybox", check=False).returncode != 0
    daemon.docker("load", "-i", str(saved))
    assert daemon.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip() == (
        image_id)
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(create.busybox_rootfs_tar())
    new_id = daemon.docker("import", "-c", 'CMD ["sh"]', "-m", "imported", str(rootfs),
                           "imp:1").stdout.strip()
    cfg = json.loads(daemon.docker("image", "inspect", "imp:1").stdout)[0]
    assert cfg["Id"] == new_id and cfg["Config"]["Cmd"] == ["sh"] and cfg["Comment"] == (
        "imported")
    events = daemon.docker("events", "--since", "0", "--until", str(int(time.time()) + 1),
                           "--format", "{{.Type}} {{.Action}}").stdout
    assert "image load" in events and "image tag" in events and "image delete" in events
    # a registry that is not there (loopback only: tests never reach out)
    pull = daemon.docker("pull", "127.0.0.1:9/nosuchimage", check=False)
    assert pull.returncode != 0 and "Error response from daemon" in pull.stderr


def test_bad_input_gets_4xx_and_daemon_survives(daemon: Daemon) -> None:
    # as dockerd: a bad archive's error comes in the load's progress stream
    status, body, _ = daemon.http("POST", "/images/load", b"\x00" * 5000 + b"garbage")
    assert status == 200 and json.loads(body)["error"].startswith("archive: ")
    status, _, _ = daemon.http("GET", "/images/json?filters=%7Bnot%20json")
    assert status == 400
    status, _, _ = daemon.http("GET", "/images/json?filters=%7B%22nosuch%22%3A%5B%22x%22%5D%7D")
    assert status == 400
    status, _, _ = daemon.http("POST", "/images/busybox/tag")
    assert status in (400, 404)
    status, _, _ = daemon.http("DELETE", "/images/" + "a" * 300)
    assert status in (400, 404)
    for query in ("since=bogus", "until=10x", "since=2026-13-45"):
        status, body, _ = daemon.http("GET", f"/events?{query}")
        assert status == 400 and b"invalid timestamp" in body, (query, body)
    assert daemon.http("GET", "/system/df?type=bogus")[0] == 400
    assert daemon.http("GET", "/_ping")[0] == 200


def test_socket_is_for_the_docker_group_only(daemon: Daemon) -> None:
    st = os.stat(daemon.sock)
    assert oct(st.st_mode & 0o777) == "0o660"
    user = f"mt{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", user], check=True)
    try:
        cmd = f"docker -H {daemon.host} version --format '{{{{.Server.Version}}}}'"
        denied = subprocess.run(["su", user, "-c", cmd], capture_output=True, text=True,
                                timeout=30)
        assert denied.returncode != 0 and "permission denied" in denied.stderr.lower()
        subprocess.run(["usermod", "-aG", "docker", user], check=True)
        allowed = subprocess.run(["su", user, "-c", cmd], capture_output=True, text=True,
                                 timeout=30)
        assert allowed.returncode == 0, allowed.stderr
    finally:
        subprocess.run(["userdel", user], capture_output=True)


def test_kill_9_loses_nothing(daemon: Daemon, busybox_archive: Path) -> None:
    daemon.docker("load", "-i", str(busybox_archive))
    daemon.docker("tag", "busybox", "kept:1")
    daemon.stop(signal.SIGKILL)
    daemon.start()
    tags = daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert sorted(tags) == ["busybox:latest", "kept:1"]
    daemon.stop(signal.SIGTERM)
    assert not daemon.sock.exists(), "the socket outlived a clean shutdown"
    daemon.start()
    assert daemon.docker("images", "-q").stdout.split()


def test_tcp_listener_is_loopback_only_without_tls(tmp_path: Path) -> None:
    p = subprocess.run([MATOUD, "-H", "tcp://0.0.0.0:23750", "--data-root",
                        str(tmp_path / "d"), "--exec-root", str(tmp_path / "r"),
                        "--config-file", "/nonexistent"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0 and "refusing plain TCP" in p.stderr
    io.BytesIO()


def test_run_containers_with_the_cli(daemon: Daemon, busybox_archive: Path) -> None:
    daemon.docker("load", "-i", str(busybox_archive))
    p = daemon.docker("run", "--rm", "busybox", "echo", "Hello World!")
    assert p.stdout == "Hello World!\n"
    assert daemon.docker("run", "--rm", "busybox", "sh", "-c", "echo err >&2; exit 3",
                         check=False).returncode == 3
    cid = daemon.docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
                        "trap 'exit 0' TERM; i=0; while true; do echo tick $i; "
                        "i=$((i+1)); sleep 0.1; done").stdout.strip()
    assert len(cid) == 64
    ps = daemon.docker("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}").stdout
    assert f"{cid[:12]} ticker Up" in ps
    time.sleep(0.5)
    logs = daemon.docker("logs", "ticker").stdout.splitlines()
    assert logs[:2] == ["tick 0", "tick 1"]
    assert daemon.docker("logs", "--tail", "1", "ticker").stdout.count("\n") == 1
    state = json.loads(daemon.docker("inspect", "ticker").stdout)[0]
    assert state["State"]["Running"] and state["Config"]["Image"] == "busybox"
    daemon.docker("stop", "ticker")
    assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}", "ticker").stdout.strip() == "0"
    daemon.docker("start", "ticker")
    assert "ticker" in daemon.docker("ps", "--format", "{{.Names}}").stdout
    daemon.docker("rm", "-f", "ticker")
    assert "ticker" not in daemon.docker("ps", "-a", "--format", "{{.Names}}").stdout
    rm = daemon.docker("rmi", "busybox", check=False)
    assert rm.returncode == 0  # no container uses it any more


def test_run_with_a_terminal(daemon: Daemon, busybox_archive: Path) -> None:
    if not shutil.which("script"):
        pytest.skip("util-linux script is missing")
    daemon.docker("load", "-i", str(busybox_archive))
    cmd = f"docker -H {daemon.host} run -i -t --rm busybox sh -c 'tty; echo Hello World!'"
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert "/dev/pts/0" in p.stdout and "Hello World!" in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_containers_survive_a_daemon_restart(daemon: Daemon, busybox_archive: Path,
                                             sig: int) -> None:
    daemon.docker("load", "-i", str(busybox_archive))
    daemon.docker("run", "-d", "--name", "survivor", "busybox", "sh", "-c",
                  "trap 'exit 7' TERM; i=0; while true; do echo tick $i; i=$((i+1)); "
                  "sleep 0.1; done")
    daemon.docker("run", "-d", "--name", "shortlived", "busybox", "sh", "-c", "sleep 0.5")
    time.sleep(0.3)
    daemon.stop(sig)
    time.sleep(0.8)  # shortlived exits while no daemon runs
    daemon.start()
    ps = daemon.docker("ps", "--format", "{{.Names}}").stdout.split()
    assert ps == ["survivor"]
    before = len(daemon.docker("logs", "survivor").stdout.splitlines())
    time.sleep(0.4)
    after = len(daemon.docker("logs", "survivor").stdout.splitlines())
    assert after > before, "the container's log stopped while the daemon was away"
    assert daemon.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                         "shortlived").stdout.strip() == "exited 0"
    daemon.docker("stop", "survivor")
    assert daemon.docker("inspect", "-f", "{{.State.ExitCode}}",
                         "survivor").stdout.strip() == "7"


def test_exec(daemon: Daemon, busybox_archive: Path) -> None:
    daemon.docker("load", "-i", str(busybox_archive))
    daemon.docker("run", "-d", "--name", "box", "busybox", "sleep", "600")
    p = daemon.docker("exec", "box", "sh", "-c", "echo in $(hostname); exit 4", check=False)
    assert p.returncode == 4 and p.stdout.startswith("in ")
    assert daemon.docker("exec", "-i", "box", "cat", input="piped\n").stdout == "piped\n"
    missing = daemon.docker("exec", "box", "nosuchcmd", check=False)
    assert missing.returncode == 126 and "executable file not found" in missing.stdout + (
        missing.stderr)
    daemon.docker("exec", "-d", "box", "sh", "-c", "echo detached > /tmp/d")
    deadline = time.monotonic() + 5
    while daemon.docker("exec", "box", "cat", "/tmp/d", check=False).stdout != "detached\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    if shutil.which("script"):
        cmd = f"docker -H {daemon.host} exec -it box sh -c 'tty; echo TTY-EXEC'"
        t = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert "/dev/pts/" in t.stdout and "TTY-EXEC" in t.stdout, t.stdout + t.stderr
        # the shim once closed a tty exec's pty twice and died of EBADF: the container
        # must outlive any number of its execs
        for i in range(3):
            t = subprocess.run(["script", "-qec", f"{cmd}; echo again{i}", "/dev/null"],
                               capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
            assert f"again{i}" in t.stdout
        assert daemon.docker("inspect", "-f", "{{.State.Running}}", "box").stdout == "true\n"
        assert daemon.docker("exec", "box", "echo", "alive").stdout == "alive\n"


def test_pause_top_diff_rename_commit_export(daemon: Daemon, busybox_archive: Path) -> None:
    daemon.docker("load", "-i", str(busybox_archive))
    daemon.docker("run", "-d", "--name", "c1", "busybox", "sh", "-c",
                  "echo new > /new; rm /bin/ls; sleep 600")
    time.sleep(0.3)
    top = daemon.docker("top", "c1").stdout
    assert "PID" in top.splitlines()[0] and "sleep 600" in top
    daemon.docker("pause", "c1")
    status = daemon.docker("ps", "--format", "{{.Status}}").stdout.strip()
    assert status.startswith("Up ") and status.endswith(" (Paused)"), status
    daemon.docker("unpause", "c1")
    diff = daemon.docker("diff", "c1").stdout.split("\n")
    assert "A /new" in diff and "D /bin/ls" in diff
    assert not any("hosts" in line for line in diff)
    daemon.docker("rename", "c1", "c2")
    new_id = daemon.docker("commit", "-m", "snap", "c2", "snap:1").stdout.strip()
    assert new_id.startswith("sha256:")
    assert daemon.docker("run", "--rm", "snap:1", "cat", "/new").stdout == "new\n"
    assert daemon.docker("run", "--rm", "snap:1", "test", "-e", "/bin/ls",
                         check=False).returncode == 1
    exported = subprocess.run(["docker", "-H", daemon.host, "export", "c2"],
                              capture_output=True, timeout=60).stdout
    import tarfile as _tar

    with _tar.open(fileobj=io.BytesIO(exported)) as t:
        names = {n.lstrip("./") for n in t.getnames()}
    assert "new" in names and "bin/busybox" in names and "bin/ls" not in names


def test_volumes(daemon: Daemon, busybox_archive: Path, tmp_path: Path) -> None:
    daemon.docker("load", "-i", str(busybox_archive))
    daemon.docker("volume", "create", "data1")
    daemon.docker("run", "--rm", "-v", "data1:/data", "busybox", "sh", "-c",
                  "echo persisted > /data/f")
    ro = daemon.docker("run", "--rm", "-v", "data1:/data:ro", "busybox", "sh", "-c",
                       "cat /data/f; touch /data/g", check=False)
    assert ro.stdout == "persisted\n" and "Read-only" in ro.stderr
    # a new volume on a path the image fills starts with the image's files
    assert "passwd" in daemon.docker("run", "--rm", "-v", "etc:/etc", "busybox", "ls",
                                     "/etc").stdout
    host = tmp_path / "host"
    host.mkdir()
    (host / "x").write_text("from host\n")
    assert daemon.docker("run", "--rm", "-v", f"{host}:/hb", "busybox", "cat",
                         "/hb/x").stdout == "from host\n"
    daemon.docker("run", "--name", "anon", "-v", "/data", "busybox", "true")
    mounts = json.loads(daemon.docker("inspect", "anon").stdout)[0]["Mounts"]
    assert mounts[0]["Type"] == "volume" and mounts[0]["Destination"] == "/data"
    assert daemon.docker("volume", "rm", "data1", check=False).returncode == 0
    busy = daemon.docker("volume", "rm", mounts[0]["Name"], check=False)
    assert busy.returncode != 0 and "in use" in busy.stderr
    daemon.docker("rm", "-v", "anon")
    assert mounts[0]["Name"] not in daemon.docker("volume", "ls", "-q").stdout
    assert daemon.docker("volume", "inspect", "data1", check=False).returncode != 0


def test_system_df_counts_what_is_there(daemon: Daemon, busybox_archive: Path) -> None:
    """/system/df: each image's containers and shared layers, each container's own
    layer, each volume's bytes and users; `type` narrows it; /build/prune answers."""
    daemon.docker("load", "-i", str(busybox_archive))
    daemon.docker("tag", "busybox", "other:1")
    daemon.docker("volume", "create", "dfvol")
    daemon.docker("volume", "create", "idle")
    daemon.docker("run", "--name", "writer", "-v", "dfvol:/v", "busybox", "sh", "-c",
                  "head -c 50000 /dev/zero > /v/f; head -c 3000 /dev/zero > /mine")
    status, body, _ = daemon.http("GET", "/system/df")
    assert status == 200
    df = json.loads(body)
    (image,) = df["Images"]  # two names, one image
    assert image["Containers"] == 1 and image["SharedSize"] == 0
    assert df["LayersSize"] == image["Size"] > 0
    (writer,) = df["Containers"]
    assert writer["SizeRw"] >= 3000 and writer["SizeRootFs"] == writer["SizeRw"] + image["Size"]
    usage = {v["Name"]: v["UsageData"] for v in df["Volumes"]}
    assert usage["dfvol"] == {"Size": 50000, "RefCount": 1}
    assert usage["idle"] == {"Size": 0, "RefCount": 0}
    assert df["BuildCache"] == []
    status, body, _ = daemon.http("GET", "/system/df?type=volume")
    assert status == 200 and set(json.loads(body)) == {"Volumes"}
    assert daemon.http("GET", "/system/df?type=bogus")[0] == 400
    status, body, _ = daemon.http("POST", "/build/prune")
    assert (status, json.loads(body)) == (200, {"CachesDeleted": [], "SpaceReclaimed": 0})


def test_stats(daemon: Daemon, busybox_archive: Path) -> None:
    daemon.docker("load", "-i", str(busybox_archive))
    daemon.docker("run", "-d", "--name", "burn", "-m", "64m", "busybox", "sh", "-c",
                  "while true; do :; done")
    time.sleep(0.5)
    row = daemon.docker("stats", "--no-stream", "--format",
                        "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}").stdout.split()
    assert row[0] == "burn" and float(row[1].rstrip("%")) > 20
    assert row[-1] == "1" and row[-2] == "64MiB"


def test_restart_policies(daemon: Daemon, busybox_archive: Path) -> None:
    daemon.docker("load", "-i", str(busybox_archive))
    daemon.docker("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox",
                  "sh", "-c", "exit 3")
    daemon.docker("run", "-d", "--name", "forever", "--restart", "always", "busybox", "sh",
                  "-c", "sleep 0.2")
    deadline = time.monotonic() + 15
    while True:
        flaky = json.loads(daemon.docker("inspect", "flaky").stdout)[0]
        forever = json.loads(daemon.docker("inspect", "forever").stdout)[0]
        if flaky["RestartCount"] == 2 and not flaky["State"]["Running"] \
                and not flaky["State"]["Restarting"] and forever["RestartCount"] >= 2:
            break
        assert time.monotonic() < deadline, (flaky["RestartCount"], forever["RestartCount"])
        time.sleep(0.2)
    assert flaky["State"]["ExitCode"] == 3
    daemon.docker("stop", "forever")
    count = json.loads(daemon.docker("inspect", "forever").stdout)[0]["RestartCount"]
    time.sleep(1.0)
    after = json.loads(daemon.docker("inspect", "forever").stdout)[0]
    assert after["RestartCount"] == count and not after["State"]["Running"]


def test_healthcheck(daemon: Daemon, busybox_archive: Path) -> None:
    daemon.docker("load", "-i", str(busybox_archive))
    daemon.docker("run", "-d", "--name", "hc", "--health-cmd", "test -e /tmp/ok",
                  "--health-interval", "200ms", "--health-retries", "2", "busybox", "sh",
                  "-c", "sleep 1; touch /tmp/ok; sleep 600")
    deadline = time.monotonic() + 15
    seen = set()
    while "healthy" not in seen:
        assert time.monotonic() < deadline, seen
        health = json.loads(daemon.docker("inspect", "hc").stdout)[0]["State"].get("Health")
        if health:
            seen.add(health["Status"])
        time.sleep(0.1)
    assert "unhealthy" in seen or "starting" in seen
    assert "(healthy)" in daemon.docker("ps", "--format", "{{.Status}}").stdout
    log = json.loads(daemon.docker("inspect", "hc").stdout)[0]["State"]["Health"]["Log"]
    assert log[-1]["ExitCode"] == 0


def test_update(daemon: Daemon, busybox_archive: Path) -> None:
    daemon.docker("load", "-i", str(busybox_archive))
    cid = daemon.docker("run", "-d", "--name", "up", "-m", "64m", "busybox", "sleep",
                        "600").stdout.strip()
    daemon.docker("update", "--memory", "128m", "--memory-swap", "256m", "--cpu-shares",
                  "512", "--restart", "on-failure:3", "up")
    limit = Path(f"/sys/fs/cgroup/memory/matou/{cid}/memory.limit_in_bytes").read_text()
    assert int(limit) == 128 << 20
    assert Path(f"/sys/fs/cgroup/cpu/matou/{cid}/cpu.shares").read_text().strip() == "512"
    host = json.loads(daemon.docker("inspect", "up").stdout)[0]["HostConfig"]
    assert host["Memory"] == 128 << 20 and host["RestartPolicy"]["Name"] == "on-failure"
    daemon.docker("update", "--cpu-shares", "256", "up")
    host = json.loads(daemon.docker("inspect", "up").stdout)[0]["HostConfig"]
    assert host["RestartPolicy"]["MaximumRetryCount"] == 3 and host["Memory"] == 128 << 20


def _upgrade(daemon: Daemon, path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(daemon.sock))
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
              "Content-Length: 0\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)  # byte by byte: the stream that follows stays in the socket
    assert b" 101 " in head.split(b"\r\n")[0], head
    return s


def test_attach_detach_keys_and_logs(daemon: Daemon, busybox_archive: Path) -> None:
    daemon.docker("load", "-i", str(busybox_archive))
    cid = daemon.docker("run", "-d", "-i", "-t", "busybox", "cat").stdout.strip()
    s = _upgrade(daemon, f"/containers/{cid}/attach?stdin=1&stdout=1&stream=1"
                         "&detachKeys=ctrl-x,y")
    s.sendall(b"hello\n")
    got = b""
    while got.count(b"hello") < 2:  # the tty's echo, then cat's
        got += s.recv(100)
    s.sendall(b"\x18")  # the first key alone is held back, not detached on
    time.sleep(0.2)
    s.sendall(b"y")
    time.sleep(0.3)
    with pytest.raises(OSError):
        for _ in range(20):
            s.sendall(b"after detach\n")
            time.sleep(0.05)
    s.close()
    assert daemon.docker("inspect", "-f", "{{.State.Running}}", cid).stdout == "true\n"
    status, body, _ = daemon.http("POST", f"/containers/{cid}/attach?stdin=1&detachKeys=ctrl-")
    assert status == 400 and b"Invalid detach keys" in body
    # logs=1&stream=0: what the container wrote so far, then the end
    done = daemon.docker("run", "-d", "busybox", "echo", "logged").stdout.strip()
    daemon.docker("wait", done)
    s = _upgrade(daemon, f"/containers/{done}/attach?logs=1&stream=0&stdout=1")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    assert data == b"\x01\x00\x00\x00\x00\x00\x00\x07logged\n"


def _certs(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca-key.pem", "-out", "ca.pem")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout",
            f"{who}-key.pem", "-out", f"{who}.csr")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}.pem")


@pytest.mark.skipif(not shutil.which("openssl"), reason="no openssl")
def test_tls_listener_requires_client_certificates(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    _certs(certs)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = Path(f"/run/matou-test-{uuid.uuid4().hex[:8]}")
    proc = subprocess.Popen(
        [MATOUD, "-H", f"tcp://127.0.0.1:{port}", "--tlsverify",
         "--tlscacert", str(certs / "ca.pem"), "--tlscert", str(certs / "server.pem"),
         "--tlskey", str(certs / "server-key.pem"), "--data-root", str(tmp_path / "data"),
         "--exec-root", str(run), "--config-file", "/nonexistent", "--bridge", "none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        host = f"tcp://127.0.0.1:{port}"
        with_cert = ["docker", "-H", host, "--tlsverify", f"--tlscacert={certs / 'ca.pem'}",
                     f"--tlscert={certs / 'client.pem'}", f"--tlskey={certs / 'client-key.pem'}"]
        deadline = time.monotonic() + 20
        while True:
            p = subprocess.run([*with_cert, "version", "--format", "{{.Server.APIVersion}}"],
                               capture_output=True, text=True, timeout=30)
            if p.returncode == 0:
                break
            assert proc.poll() is None and time.monotonic() < deadline, p.stderr
            time.sleep(0.2)
        assert p.stdout.strip() == "1.50"
        # no client certificate, or plain HTTP: refused
        no_cert = subprocess.run(["docker", "-H", host, "--tls",
                                  f"--tlscacert={certs / 'ca.pem'}", "version"],
                                 capture_output=True, text=True, timeout=30)
        assert no_cert.returncode != 0
        plain = subprocess.run(["docker", "-H", host, "version"], capture_output=True,
                               text=True, timeout=30)
        assert plain.returncode != 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["pkill", "-9", "-f", f"matoud -H tcp://127.0.0.1:{port} "],
                       capture_output=True)
        shutil.rmtree(run, ignore_errors=True)


OLD_CLI = "/usr/bin/docker"  # Debian's docker.io 20.10: API 1.41


@pytest.mark.skipif(not os.path.exists(OLD_CLI) or shutil.which("docker") == OLD_CLI,
                    reason="no second (20.10) docker CLI")
def test_the_docker_20_10_cli(daemon: Daemon, busybox_archive: Path, tmp_path: Path) -> None:
    def old(*args: str) -> str:
        p = subprocess.run([OLD_CLI, "-H", daemon.host, *args], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, f"{args}: {p.stderr}"
        return p.stdout

    assert "1.41" in old("version", "--format", "{{.Client.APIVersion}}")
    old("load", "-i", str(busybox_archive))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    old("run", "-d", "--name", "w20", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
        "echo served > /index.html; exec httpd -f -p 80 -h /")
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=3) as c:
                c.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
                reply = b""
                while chunk := c.recv(4096):
                    reply += chunk
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert reply.endswith(b"served\n")
    (tmp_path / "in.txt").write_text("copied in\n")
    old("cp", str(tmp_path / "in.txt"), "w20:/tmp/in.txt")
    old("cp", "w20:/tmp/in.txt", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "copied in\n"
    assert old("exec", "w20", "cat", "/tmp/in.txt") == "copied in\n"
    assert "w20" in old("stats", "--no-stream", "--format", "{{.Name}}")
    assert "httpd" in old("top", "w20")
    assert old("ps", "--format", "{{.Ports}}") == f"127.0.0.1:{port}->80/tcp\n"
    old("rm", "-f", "w20")


def test_piped_stdin_and_paused_removal(daemon: Daemon, busybox_archive: Path) -> None:
    daemon.docker("load", "-i", str(busybox_archive))
    # the client half-closes once stdin is done; the output must still reach it
    for _ in range(3):
        assert daemon.docker("run", "--rm", "-i", "busybox", "cat",
                             input="piped\n").stdout == "piped\n"
    cid = daemon.docker("run", "-d", "busybox", "sleep", "600").stdout.strip()
    daemon.docker("pause", cid)
    assert daemon.docker("kill", "-s", "TERM", cid, check=False).returncode != 0
    daemon.docker("rm", "-f", cid)  # SIGKILL, then thawed: it goes at once
    assert daemon.docker("ps", "-aq").stdout == ""


def test_devices_sysctls_namespaces_dns_and_volumes_from(daemon: Daemon,
                                                          busybox_archive: Path) -> None:
    """The create options that reach into the spec: --device, --sysctl, --ulimit,
    --dns-search/--dns-option, --uts/--pid/--ipc (host and container:), --volumes-from."""
    d = daemon
    d.docker("load", "-i", str(busybox_archive))

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return d.docker("run", "--rm", *args, check=check)

    assert run("--device", "/dev/zero:/dev/myzero:r", "busybox", "sh", "-c",
               "head -c 3 /dev/myzero | od -An -tx1").stdout.split() == ["00"] * 3
    missing = run("--device", "/dev/nonexistent", "busybox", "true", check=False)
    assert missing.returncode != 0 and "/dev/nonexistent" in missing.stderr
    assert run("--sysctl", "net.ipv4.ip_forward=1", "busybox", "cat",
               "/proc/sys/net/ipv4/ip_forward").stdout == "1\n"
    refused = run("--sysctl", "kernel.domainname=x", "busybox", "true", check=False)
    assert refused.returncode == 125 and "not allowed" in refused.stderr
    assert run("--ulimit", "nofile=123:456", "busybox", "sh", "-c",
               "ulimit -n; ulimit -Hn").stdout.split() == ["123", "456"]
    resolv = run("--network", "none", "--dns", "10.9.9.9", "--dns-search", "example.test",
                 "--dns-option", "ndots:2", "busybox", "cat", "/etc/resolv.conf").stdout
    assert resolv.splitlines() == ["nameserver 10.9.9.9", "search example.test",
                                   "options ndots:2"]
    assert run("--uts", "host", "busybox", "hostname").stdout.strip() == os.uname().nodename
    host_pids = run("--pid", "host", "busybox", "sh", "-c", "ls /proc | grep -c '^[0-9]'")
    assert int(host_pids.stdout) > 20
    d.docker("run", "-d", "--name", "ns-owner", "--ipc", "shareable", "busybox", "sleep", "60")
    try:
        ps = run("--pid", "container:ns-owner", "--ipc", "container:ns-owner", "busybox",
                 "ps", "-o", "comm").stdout.split()
        assert "sleep" in ps
        stopped = d.docker("create", "--pid", "container:ns-owner", "busybox", "true").stdout
        d.docker("stop", "-t", "0", "ns-owner")
        late = d.docker("start", stopped.strip(), check=False)
        assert late.returncode != 0 and "non running container" in late.stderr
    finally:
        d.docker("rm", "-f", "ns-owner", check=False)
    other = d.docker("create", "--platform", "linux/arm64", "--pull", "never", "busybox",
                     "true", check=False)
    assert other.returncode != 0 and "does not match the specified platform" in other.stderr
    d.docker("rm", d.docker("create", "--platform", "linux/amd64", "busybox",
                            "true").stdout.strip())
    bogus = d.docker("create", "--ipc", "bogus", "busybox", "true", check=False)
    assert bogus.returncode == 1 and "invalid IPC mode: bogus" in bogus.stderr
    private = run("--cgroupns", "private", "busybox", "cat", "/proc/self/cgroup").stdout
    assert all(line.endswith(":/") for line in private.splitlines())
    if os.path.exists("/dev/loop0") and os.path.isdir("/sys/fs/cgroup/blkio/matou"):
        cid = d.docker("run", "-d", "--device-read-bps", "/dev/loop0:1mb", "busybox",
                       "sleep", "60").stdout.strip()
        with open(f"/sys/fs/cgroup/blkio/matou/{cid}/blkio.throttle.read_bps_device") as f:
            dev = os.stat("/dev/loop0").st_rdev
            assert f.read().split() == [f"{os.major(dev)}:{os.minor(dev)}", "1048576"]
        d.docker("rm", "-f", cid)
    not_block = run("--device-read-bps", "/dev/null:1mb", "busybox", "true", check=False)
    assert not_block.returncode != 0 and "not a block device" in not_block.stderr
    d.docker("run", "--name", "donor", "-v", "/data", "busybox", "sh", "-c",
             "echo shared > /data/x")
    shared = run("--volumes-from", "donor:ro", "busybox", "sh", "-c",
                 "cat /data/x; touch /data/y", check=False)
    assert shared.stdout == "shared\n" and "Read-only" in shared.stderr
    d.docker("rm", "-v", "donor")


def test_daemon_seccomp_profile_and_cgroup_parent(daemon: Daemon, busybox_archive: Path,
                                                  tmp_path: Path) -> None:
    """matoud --seccomp-profile FILE is every container's default (not a privileged
    one's, not over --security-opt); --cgroup-parent places the cgroup, stats follow."""
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    bad = subprocess.run([MATOUD, "--seccomp-profile", str(tmp_path / "missing.json"),
                          "-H", f"unix://{tmp_path}/bad.sock", "--data-root",
                          str(tmp_path / "bad"), "--exec-root", str(tmp_path / "badrun"),
                          "--config-file", "/nonexistent", "--bridge", "none"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--seccomp-profile" in bad.stderr
    d.stop()
    d.extra = ["--seccomp-profile", str(profile)]
    d.start()
    assert "profile=custom" in d.docker("info", "-f", "{{json .SecurityOptions}}").stdout
    denied = d.docker("run", "--rm", "busybox", "mkdir", "/x", check=False)
    assert denied.returncode != 0 and "Operation not permitted" in denied.stderr
    d.docker("run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "mkdir", "/x")
    d.docker("run", "--rm", "--privileged", "busybox", "mkdir", "/x")
    parent = f"matou-test-parent-{uuid.uuid4().hex[:8]}"
    try:
        cid = d.docker("run", "-d", "--cgroup-parent", parent, "-m", "64m", "busybox",
                       "sleep", "60").stdout.strip()
        pid = d.docker("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
        with open(f"/proc/{pid}/cgroup") as f:
            assert f"/{parent}/{cid}" in f.read()
        usage = d.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", cid).stdout
        assert usage.split("/")[1].strip() == "64MiB"
        d.docker("rm", "-f", cid)
    finally:
        for root, dirs, _ in os.walk("/sys/fs/cgroup", topdown=False):
            for name in dirs:
                if parent in os.path.join(root, name):
                    try:
                        os.rmdir(os.path.join(root, name))
                    except OSError:
                        pass


def test_logs_follow_right_after_start_misses_nothing(daemon: Daemon,
                                                       busybox_archive: Path) -> None:
    """docker-py's containers.run: start, then at once `logs?follow=1`. A short-lived
    container's output must come whole, however its exit and the read interleave."""
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    body = json.dumps({"Image": "busybox", "Cmd": ["sh", "-c", "echo hello; echo there"]})
    for _ in range(25):
        status, out, _ = d.http("POST", "/containers/create", body.encode())
        assert status == 201, out
        cid = json.loads(out)["Id"]
        assert d.http("POST", f"/containers/{cid}/start")[0] == 204
        status, out, _ = d.http("GET", f"/containers/{cid}/logs?stdout=1&follow=1")
        assert status == 200 and out.count(b"hello\n") == 1 and b"there\n" in out, out
        d.docker("rm", "-f", cid)
