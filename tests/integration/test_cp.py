"""`docker cp` against matoud with the real docker CLI: out of and into running, created
and exited containers, through volumes and binds, Docker's naming (`c:/dir/.`), and the
container's symlinks never reaching the host (CVE-2018-15664)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.matoud import Daemon
from tests.unit.archive.tars import M, make_tar


def _load(daemon: Daemon, busybox_archive: Path) -> None:
    daemon.docker("load", "-i", str(busybox_archive))


def _run(daemon: Daemon, *args: str) -> str:
    """A busybox container that sleeps (removed with the daemon's fixture)."""
    name = f"cp-{uuid.uuid4().hex[:8]}"
    daemon.docker("run", "-d", "--name", name, *args, "busybox", "sleep", "600")
    return name


def _sh(daemon: Daemon, name: str, script: str) -> str:
    return daemon.docker("exec", name, "sh", "-c", script).stdout


def _stat(daemon: Daemon, name: str, path: str) -> tuple[int, dict[str, Any]]:
    status, _, head = daemon.http("HEAD", f"/containers/{name}/archive?path={path}")
    for line in head.splitlines():
        key, _, value = line.partition(":")
        if key.lower() == "x-docker-container-path-stat":
            return status, json.loads(base64.b64decode(value.strip()))
    return status, {}


def _rootfs_mounted(daemon: Daemon, name: str) -> bool:
    cid = daemon.docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
    with open("/proc/self/mounts") as f:
        return any(f"/containers/{cid}/rootfs" in line for line in f)


def _actions(daemon: Daemon, name: str) -> list[str]:
    return daemon.docker("events", "--since", "0", "--until", str(int(time.time()) + 1),
                         "--filter", f"container={name}", "--format", "{{.Action}}"
                         ).stdout.split()


def _tree(path: Path) -> dict[str, str]:
    """Every entry below ``path``: file contents, link targets, "dir"."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        out[rel] = (f"-> {os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir()
                    else p.read_text())
    return out


def _state(path: Path) -> list[tuple[str, int, int, str]]:
    """What must not change on the host: names, modes, mtimes, contents."""
    out = []
    for p in [path, *sorted(path.rglob("*"))]:
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out.append((str(p), st.st_mode, st.st_mtime_ns, digest))
    return out


FILES = "mkdir -p /d/sub && echo hello > /d/f && echo deep > /d/sub/g && ln -s f /d/lnk"


def test_cp_out_of_running_and_stopped_containers(daemon: Daemon, busybox_archive: Path,
                                                  tmp_path: Path) -> None:
    _load(daemon, busybox_archive)
    c = _run(daemon)
    _sh(daemon, c, FILES)
    expected = {"f": "hello\n", "lnk": "-> f", "sub": "dir", "sub/g": "deep\n"}
    for state in ("running", "exited"):
        out = tmp_path / state
        out.mkdir()
        daemon.docker("cp", f"{c}:/d/f", str(out / "file"))
        assert (out / "file").read_text() == "hello\n"
        daemon.docker("cp", f"{c}:/d", str(out / "new"))  # a new name: the dir renamed
        assert _tree(out / "new") == expected
        (out / "existing").mkdir()
        daemon.docker("cp", f"{c}:/d", str(out / "existing"))  # into: as existing/d
        assert _tree(out / "existing") == {"d": "dir", **{f"d/{k}": v
                                                          for k, v in expected.items()}}
        (out / "contents").mkdir()
        daemon.docker("cp", f"{c}:/d/.", str(out / "contents"))  # the contents only
        assert _tree(out / "contents") == expected
        daemon.docker("cp", f"{c}:/d/lnk", str(out / "link"))  # the link itself
        assert os.readlink(out / "link") == "f"
        daemon.docker("cp", "-L", f"{c}:/d/lnk", str(out / "followed"))
        assert (out / "followed").read_text() == "hello\n"
        # the network files are the container's, as it sees them
        hostname = daemon.docker("inspect", "-f", "{{.Config.Hostname}}", c).stdout.strip()
        daemon.docker("cp", f"{c}:/etc/hostname", str(out / "hostname"))
        assert (out / "hostname").read_text().strip() == hostname
        status, st = _stat(daemon, c, "/d")
        assert status == 200 and st["name"] == "d" and st["mode"] == 2147484141
        assert st["linkTarget"] == "" and st["mtime"].endswith("Z")
        status, st = _stat(daemon, c, "/d/lnk")
        assert st["mode"] == 134218239 and st["linkTarget"] == "/d/f"
        assert _stat(daemon, c, "/d/.")[1]["name"] == "."
        if state == "running":
            daemon.docker("stop", "-t", "1", c)
    assert not _rootfs_mounted(daemon, c)  # mounted for each copy, unmounted after
    assert "archive-path" in _actions(daemon, c)


def test_cp_into_running_created_and_exited_containers(daemon: Daemon, busybox_archive: Path,
                                                       tmp_path: Path) -> None:
    _load(daemon, busybox_archive)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_text("A\n")
    (src / "sub/b").write_text("B\n")
    (tmp_path / "one").write_text("one\n")

    c = _run(daemon)
    daemon.docker("cp", str(tmp_path / "one"), f"{c}:/tmp/")
    daemon.docker("cp", str(tmp_path / "one"), f"{c}:/renamed")
    daemon.docker("cp", str(src), f"{c}:/tmp/")
    daemon.docker("cp", str(src) + "/.", f"{c}:/root")
    assert _sh(daemon, c, "cat /tmp/one /renamed /tmp/src/a /tmp/src/sub/b /root/a") == (
        "one\none\nA\nB\nA\n")
    assert _sh(daemon, c, "stat -c %u:%g /tmp/one").strip() == "0:0"

    created = f"cp-{uuid.uuid4().hex[:8]}"
    daemon.docker("create", "--name", created, "busybox", "cat", "/etc/motd", "/tmp/src/a")
    (tmp_path / "motd").write_text("welcome\n")
    daemon.docker("cp", str(tmp_path / "motd"), f"{created}:/etc/")
    daemon.docker("cp", str(src), f"{created}:/tmp")
    assert not _rootfs_mounted(daemon, created)
    assert daemon.docker("start", "-a", created).stdout == "welcome\nA\n"
    # now exited: copy in again and read it back out
    daemon.docker("cp", str(tmp_path / "one"), f"{created}:/etc/motd")
    daemon.docker("cp", f"{created}:/etc/motd", str(tmp_path / "back"))
    assert (tmp_path / "back").read_text() == "one\n"
    assert daemon.docker("start", "-a", created).stdout == "one\nA\n"
    assert not _rootfs_mounted(daemon, created)
    # from stdin, as a tar
    tar = make_tar(M("piped", data=b"tar\n"))
    p = subprocess.run(["docker", "-H", daemon.host, "cp", "-", f"{c}:/tmp"], input=tar,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert _sh(daemon, c, "cat /tmp/piped") == "tar\n"
    assert "extract-to-dir" in _actions(daemon, c)


def test_cp_through_volumes_and_binds(daemon: Daemon, busybox_archive: Path,
                                      tmp_path: Path) -> None:
    _load(daemon, busybox_archive)
    bind = tmp_path / "bind"
    bind.mkdir()
    (tmp_path / "f").write_text("file\n")
    c = _run(daemon, "-v", "cpvol:/data", "-v", f"{bind}:/srv/b")
    vol = Path(daemon.docker("volume", "inspect", "-f", "{{.Mountpoint}}", "cpvol")
               .stdout.strip())
    daemon.docker("cp", str(tmp_path / "f"), f"{c}:/data/")
    daemon.docker("cp", str(tmp_path / "f"), f"{c}:/srv/b/in-bind")
    assert (vol / "f").read_text() == "file\n" and (bind / "in-bind").read_text() == "file\n"
    _sh(daemon, c, "echo made-inside > /data/inside")
    daemon.docker("cp", f"{c}:/data/inside", str(tmp_path / "inside"))
    assert (tmp_path / "inside").read_text() == "made-inside\n"
    # a tree that holds mount points carries what is mounted there
    daemon.docker("cp", f"{c}:/srv", str(tmp_path / "srv"))
    assert _tree(tmp_path / "srv") == {"b": "dir", "b/in-bind": "file\n"}

    # a container never started: its volume is there to be filled before it runs
    created = f"cp-{uuid.uuid4().hex[:8]}"
    daemon.docker("create", "--name", created, "-v", "cpvol2:/opt/cfg", "busybox", "cat",
                  "/opt/cfg/f")
    daemon.docker("cp", str(tmp_path / "f"), f"{created}:/opt/cfg/")
    vol2 = Path(daemon.docker("volume", "inspect", "-f", "{{.Mountpoint}}", "cpvol2")
                .stdout.strip())
    assert (vol2 / "f").read_text() == "file\n"
    assert daemon.docker("start", "-a", created).stdout == "file\n"


def test_symlinks_in_the_container_never_reach_the_host(daemon: Daemon, busybox_archive: Path,
                                                        tmp_path: Path) -> None:
    _load(daemon, busybox_archive)
    marker_dir = tmp_path / "host-marker"
    marker_dir.mkdir()
    (marker_dir / "secret").write_text("host secret\n")
    before = _state(marker_dir)
    tag = uuid.uuid4().hex[:8]
    c = _run(daemon)
    _sh(daemon, c, f"ln -s / /x && ln -s ../../../../etc /y && ln -s {marker_dir} /m && "
                   f"ln -s {marker_dir}/secret /s && mkdir /out")
    (tmp_path / f"in-{tag}").write_text("in\n")
    src = str(tmp_path / f"in-{tag}")

    # reading: every way of naming the host path finds nothing (it is not in the container)
    for path in ("/m/secret", f"/x{marker_dir}/secret", f"/../../..{marker_dir}/secret",
                 f"/y/../..{marker_dir}/secret"):
        p = daemon.docker("cp", f"{c}:{path}", str(tmp_path / "got"), check=False)
        assert p.returncode == 1 and "Could not find the file" in p.stderr, p.stderr
        assert not (tmp_path / "got").exists()
    p = daemon.docker("cp", "-L", f"{c}:/s", str(tmp_path / "got"), check=False)
    assert p.returncode != 0 and not (tmp_path / "got").exists()
    # /y/hostname and /../../etc/hostname are the container's, not the host's
    hostname = daemon.docker("inspect", "-f", "{{.Config.Hostname}}", c).stdout.strip()
    for path in ("/y/hostname", "/x/etc/hostname", "/../../../etc/hostname"):
        out = tmp_path / f"h-{abs(hash(path))}"
        daemon.docker("cp", f"{c}:{path}", str(out))
        assert out.read_text().strip() == hostname

    # writing: into the container's /etc (through /y and /x), never the host's
    leaked = [Path(f"/etc/in-{tag}"), Path(f"/out/in-{tag}")]
    try:
        daemon.docker("cp", src, f"{c}:/y/")
        daemon.docker("cp", src, f"{c}:/x/out/")
        daemon.docker("cp", src, f"{c}:/../../out/again")
        assert _sh(daemon, c, f"cat /etc/in-{tag} /out/in-{tag} /out/again") == (
            "in\nin\nin\n")
        assert not [p for p in leaked if p.exists()]
    finally:
        for p in leaked:  # should a regression write to the host, do not leave it there
            p.unlink(missing_ok=True)
    for dest in (f"{c}:/m/", f"{c}:/m/secret", f"{c}:/x{marker_dir}/"):
        daemon.docker("cp", src, dest, check=False)
    assert _state(marker_dir) == before
    # what /m stands for was made inside the container, if anywhere
    assert _sh(daemon, c, f"ls {marker_dir} 2>/dev/null || true").strip() in ("", f"in-{tag}")


def test_hostile_archives_are_refused(daemon: Daemon, busybox_archive: Path,
                                      tmp_path: Path) -> None:
    _load(daemon, busybox_archive)
    c = _run(daemon)
    _sh(daemon, c, "mkdir /up && ln -s / /up/root")
    before_etc = _sh(daemon, c, "ls -la /etc")
    tag = uuid.uuid4().hex[:8]
    pwned = f"pwned-{tag}"
    hostile = [
        make_tar(M(f"../{pwned}", data=b"x")),
        make_tar(M(f"a/../../../{pwned}", data=b"x")),
        make_tar(M("lnk", "symlink", linkname="/"), M(f"lnk/etc/{pwned}", data=b"x")),
        make_tar(M(f"root/etc/{pwned}", data=b"x")),  # through the container's /up/root
        make_tar(M("rel", "symlink", linkname="../../../../etc"),
                 M(f"rel/{pwned}", data=b"x")),
        make_tar(M("h", "link", linkname="../../etc/passwd")),
        make_tar(M("h", "link", linkname="/etc/passwd")),
        b"\x01not a tar" * 200,
    ]
    leaked = [Path(f"/{pwned}"), Path(f"/etc/{pwned}")]
    try:
        for body in hostile:
            status, payload, _ = daemon.http("PUT", f"/containers/{c}/archive?path=/up", body)
            assert status == 400, (status, payload)
            assert "message" in json.loads(payload)
        assert _sh(daemon, c, "ls -la /etc") == before_etc
        assert _sh(daemon, c, "ls /up").split() == ["lnk", "root"]
        assert not [p for p in leaked if p.exists()]
    finally:
        for p in leaked:  # should a regression write to the host, do not leave it there
            p.unlink(missing_ok=True)
    # a leading / is dropped, as Docker does: the member lands below the extraction point
    status, _, _ = daemon.http("PUT", f"/containers/{c}/archive?path=/up",
                               make_tar(M("/abs", data=b"ok")))
    assert status == 200 and _sh(daemon, c, "cat /up/abs") == "ok"


def test_read_only_rootfs_and_volumes(daemon: Daemon, busybox_archive: Path,
                                      tmp_path: Path) -> None:
    _load(daemon, busybox_archive)
    (tmp_path / "f").write_text("f\n")
    c = _run(daemon, "--read-only", "-v", "cprw:/rw", "-v", "cpro:/ro:ro")
    p = daemon.docker("cp", str(tmp_path / "f"), f"{c}:/tmp/", check=False)
    assert p.returncode == 1
    assert "Error response from daemon: container rootfs is marked read-only" in p.stderr
    p = daemon.docker("cp", str(tmp_path / "f"), f"{c}:/ro/", check=False)
    assert p.returncode == 1 and "mounted volume is marked read-only" in p.stderr
    daemon.docker("cp", str(tmp_path / "f"), f"{c}:/rw/")
    assert _sh(daemon, c, "cat /rw/f") == "f\n"
    daemon.docker("cp", f"{c}:/etc/passwd", str(tmp_path / "passwd"))  # reading is fine
    assert (tmp_path / "passwd").read_text().startswith("root:")
    status, payload, _ = daemon.http("PUT", f"/containers/{c}/archive?path=/tmp",
                                     make_tar(M("x", data=b"1")))
    assert status == 400 and json.loads(payload) == {
        "message": "container rootfs is marked read-only"}


def test_errors(daemon: Daemon, busybox_archive: Path, tmp_path: Path) -> None:
    _load(daemon, busybox_archive)
    c = _run(daemon)
    p = daemon.docker("cp", f"{c}:/nonexistent", str(tmp_path / "x"), check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == (f"Error response from daemon: Could not find the file "
                                f"/nonexistent in container {c}")
    (tmp_path / "f").write_text("f")
    p = daemon.docker("cp", str(tmp_path / "f"), f"{c}:/no/such/dir/", check=False)
    assert p.returncode == 1 and not (tmp_path / "x").exists()
    p = daemon.docker("cp", str(tmp_path / "f"), "nosuchcontainer:/tmp", check=False)
    assert p.returncode == 1 and "No such container: nosuchcontainer" in p.stderr
    assert daemon.http("HEAD", f"/containers/{c}/archive?path=/nonexistent")[0] == 404
    assert daemon.http("HEAD", "/containers/nope/archive?path=/")[0] == 404
    status, body, _ = daemon.http("GET", f"/containers/{c}/archive")
    assert status == 400 and json.loads(body) == {"message": "path is required"}
    status, body, _ = daemon.http("GET", f"/containers/{c}/archive?path=/nonexistent")
    assert status == 404 and json.loads(body) == {
        "message": f"Could not find the file /nonexistent in container {c}"}
    status, body, _ = daemon.http("PUT", f"/containers/{c}/archive?path=/etc/passwd",
                                  make_tar(M("x", data=b"1")))
    assert status == 400 and json.loads(body) == {
        "message": "extraction point is not a directory"}
    status, _, _ = daemon.http("PUT", f"/containers/{c}/archive?path=/tmp&copyUIDGID=maybe",
                               make_tar(M("x", data=b"1")))
    assert status == 400
    # a directory may not become a file when the CLI says so (it always does)
    _sh(daemon, c, "mkdir -p /tmp/dir/f")
    p = daemon.docker("cp", str(tmp_path / "f"), f"{c}:/tmp/dir/", check=False)
    assert p.returncode == 1 and "cannot overwrite directory" in p.stderr


@pytest.mark.parametrize("api", ["v1.41", "v1.50"])
def test_api_shapes(daemon: Daemon, busybox_archive: Path, api: str) -> None:
    _load(daemon, busybox_archive)
    c = _run(daemon)
    status, _, head = daemon.http("HEAD", f"/{api}/containers/{c}/archive?path=/etc/")
    assert status == 200 and "x-docker-container-path-stat" in head.lower()
    status, body, head = daemon.http("GET", f"/{api}/containers/{c}/archive?path=/etc/.")
    assert status == 200 and "application/x-tar" in head
    assert body[:2] == b"./" and b"./passwd\0" in body
