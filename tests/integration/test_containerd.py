"""containerd 1.6 drives matou-runtime through its runc shim (`ctr run --runc-binary`).

A private containerd (own socket, root, state; CRI off) runs for this module only; the
busybox image is written here as an OCI archive and imported with `ctr images import`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import RUNTIME

NS = "matou-test"
IMAGE = "docker.io/library/matou-test-busybox:latest"

pytestmark = pytest.mark.skipif(not shutil.which("containerd") or not shutil.which("ctr"),
                                reason="containerd is not installed")


def _blob(out: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    out.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}", len(data)


def _oci_archive(rootfs: Path, dest: Path) -> None:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for entry in sorted(os.listdir(rootfs)):
            t.add(rootfs / entry, arcname=entry)
    with tarfile.open(dest, "w") as out:
        layer_digest, layer_size = _blob(out, layer.getvalue())
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }).encode()
        config_digest, config_size = _blob(out, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer_size}],
        }).encode()
        manifest_digest, manifest_size = _blob(out, manifest)
        for name, body in (
            ("oci-layout", {"imageLayoutVersion": "1.0.0"}),
            ("index.json", {"schemaVersion": 2, "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}),
        ):
            data = json.dumps(body).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


class Ctr:
    def __init__(self, sock: Path, runtime_root: Path) -> None:
        self.sock = sock
        self.runtime_root = runtime_root

    def __call__(self, *args: str, timeout: float = 30,
                 check: bool = False) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(["ctr", "-a", str(self.sock), "-n", NS, *args], capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {p.returncode}\n{p.stdout}{p.stderr}")
        return p

    def run_args(self, *flags: str) -> list[str]:
        return ["run", *flags, "--runc-binary", RUNTIME, "--runc-root",
                str(self.runtime_root), IMAGE, f"matou-ctr-{uuid.uuid4().hex[:8]}"]


@pytest.fixture(scope="module")
def ctr(tmp_path_factory: pytest.TempPathFactory, rootfs_template: Path) -> Iterator[Ctr]:
    tag = uuid.uuid4().hex[:8]
    state = Path(f"/run/matou-test-ctrd-{tag}")
    root = tmp_path_factory.mktemp("ctrd")
    state.mkdir(mode=0o700)
    sock = state / "containerd.sock"
    conf = state / "config.toml"
    conf.write_text(f"""version = 2
root = "{root}/root"
state = "{state}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{state}/debug.sock"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{root}/opt"
  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = "{state}/runc-v1"
""")
    log = open(root / "containerd.log", "w")  # noqa: SIM115 (closed at teardown)
    daemon = subprocess.Popen(["containerd", "--config", str(conf)], stdout=log, stderr=log,
                              stdin=subprocess.DEVNULL)
    c = Ctr(sock, state / "matou-runtime")
    try:
        deadline = time.monotonic() + 20
        while c("version").returncode != 0:
            assert daemon.poll() is None, (root / "containerd.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "containerd did not come up"
            time.sleep(0.1)
        archive = root / "busybox-oci.tar"
        _oci_archive(rootfs_template, archive)
        c("images", "import", "--base-name", IMAGE.rsplit(":", 1)[0], str(archive), check=True)
        yield c
    finally:
        for task in c("tasks", "ls", "-q").stdout.split():
            c("tasks", "kill", "-s", "SIGKILL", task)
            c("tasks", "delete", "-f", task)
        for ctr_id in c("containers", "ls", "-q").stdout.split():
            c("containers", "delete", ctr_id)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        subprocess.run(["umount", "-R", "-l", str(root)], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
        for d in Path("/sys/fs/cgroup").glob(f"*/{NS}"):
            for sub in sorted(d.glob("**/"), key=lambda p: -len(p.parts)):
                sub.rmdir()


def test_run_prints_hello(ctr: Ctr) -> None:
    p = ctr(*ctr.run_args("--rm"), "echo", "hello", check=True)
    assert p.stdout == "hello\n"


def test_exit_code_reaches_ctr(ctr: Ctr) -> None:
    assert ctr(*ctr.run_args("--rm"), "sh", "-c", "exit 7").returncode == 7


def test_exec_kill_pause_resume(ctr: Ctr) -> None:
    args = ctr.run_args("-d")
    cid = args[-1]
    ctr(*args, "sleep", "600", check=True)
    try:
        p = ctr("task", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo in-exec; exit 3")
        assert p.returncode == 3 and p.stdout == "in-exec\n"
        ctr("task", "pause", cid, check=True)
        assert "PAUSED" in ctr("task", "ls", check=True).stdout
        ctr("task", "resume", cid, check=True)
        assert "RUNNING" in ctr("task", "ls", check=True).stdout
        ps = ctr("task", "ps", cid, check=True).stdout
        assert len(ps.splitlines()) >= 2
        ctr("task", "kill", "-s", "SIGKILL", cid, check=True)
        deadline = time.monotonic() + 10
        while "STOPPED" not in ctr("task", "ls").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        ctr("task", "delete", "-f", cid)
        ctr("container", "delete", cid)


def test_terminal(ctr: Ctr) -> None:
    if not shutil.which("script"):
        pytest.skip("util-linux script is missing")
    cmd = " ".join(["ctr", "-a", str(ctr.sock), "-n", NS, *ctr.run_args("--rm", "-t"),
                    "sh", "-c", "'tty; echo TTY-OK'"])
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert "/dev/pts/" in p.stdout and "TTY-OK" in p.stdout, p.stdout + p.stderr
