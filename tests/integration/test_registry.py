"""matou-registry as real clients use it: skopeo copies an OCI layout in and back out with
the same digests, and Debian's dockerd (when its peer is running) pushes and pulls."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.matoud import Daemon

REGISTRY = os.path.join(os.path.dirname(sys.executable), "matou-registry")
LAYOUT = Path("/var/lib/matou-fixtures/busybox-oci-skopeo")


def _until_serving(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Wait (20 s at most, and only while ``proc`` lives) for a registry to answer /v2/."""
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://{url}/v2/", timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # up, and asking for credentials
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)


def _serve(tmp_path: Path, *extra: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([REGISTRY, "serve", "--addr", f"127.0.0.1:{port}", "--root",
                             str(tmp_path / "root"), *extra], stderr=subprocess.DEVNULL)
    url = f"127.0.0.1:{port}"
    try:
        _until_serving(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    yield from _serve(tmp_path)


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[str]:
    """Token auth (Docker's Bearer flow) for the user peer / peerpass."""
    import bcrypt

    (tmp_path / "htpasswd").write_text(
        "peer:" + bcrypt.hashpw(b"peerpass", bcrypt.gensalt(5)).decode() + "\n")
    yield from _serve(tmp_path, "--htpasswd", str(tmp_path / "htpasswd"))


def _layout(tmp_path: Path) -> Path:
    """An OCI layout of a small image: the fixture when there, else made by matou-images."""
    if LAYOUT.exists():
        return LAYOUT
    from matou.images import create, formats
    from matou.images.setup import open_store

    store = open_store(str(tmp_path / "store"), "native")
    create.build_busybox(store)
    out = tmp_path / "layout"
    formats.save_layout(store, ["busybox:latest"], str(out))
    return out


@pytest.mark.skipif(not shutil.which("skopeo"), reason="no skopeo")
def test_skopeo_copies_in_and_out(registry: str, tmp_path: Path) -> None:
    src = _layout(tmp_path)
    index = json.loads((src / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    ref = index["manifests"][0].get("annotations", {}).get(
        "org.opencontainers.image.ref.name", "latest")

    def skopeo(*args: str) -> None:
        p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr

    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:{ref}",
           f"docker://{registry}/library/busybox:latest")
    skopeo("copy", "--src-tls-verify=false", f"docker://{registry}/library/busybox:latest",
           f"oci:{tmp_path / 'back'}:latest")
    back = json.loads((tmp_path / "back" / "index.json").read_text())
    assert back["manifests"][0]["digest"] == digest
    tags = json.loads(urllib.request.urlopen(
        f"http://{registry}/v2/library/busybox/tags/list", timeout=10).read())
    assert tags == {"name": "library/busybox", "tags": ["latest"]}
    found = json.loads(urllib.request.urlopen(f"http://{registry}/v1/search?q=busy",
                                              timeout=10).read())
    assert [r["name"] for r in found["results"]] == ["library/busybox"]


def test_dockerd_pushes_and_pulls(registry: str, peer_docker: str) -> None:
    def docker(*args: str) -> str:
        p = subprocess.run(["docker", "-H", peer_docker, *args], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        return p.stdout

    image = f"{registry}/peer/busybox:1"
    docker("tag", "busybox:latest", image)
    try:
        pushed = docker("push", image)
        digest = pushed.strip().splitlines()[-1].split("digest: ")[1].split()[0]
        docker("rmi", image)
        docker("pull", image)
        digests = json.loads(docker("inspect", "-f", "{{json .RepoDigests}}", image))
        assert f"{registry}/peer/busybox@{digest}" in digests
    finally:
        subprocess.run(["docker", "-H", peer_docker, "rmi", image], capture_output=True, timeout=60)


@pytest.mark.skipif(not shutil.which("skopeo") or not shutil.which("docker"),
                    reason="no skopeo or docker CLI")
def test_docker_pull_and_run_through_matoud(registry: str, daemon: Daemon,
                                            tmp_path: Path) -> None:
    src = _layout(tmp_path)
    index = json.loads((src / "index.json").read_text())
    ref = index["manifests"][0].get("annotations", {}).get(
        "org.opencontainers.image.ref.name", "latest")
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{src}:{ref}",
                    f"docker://{registry}/library/busybox:latest"], check=True,
                   capture_output=True, timeout=120)
    manifest = json.loads((src / "blobs" / "sha256" /
                           index["manifests"][0]["digest"].split(":")[1]).read_text())
    config_digest = manifest["config"]["digest"]
    out = daemon.docker("pull", f"{registry}/library/busybox:latest").stdout
    assert "Pull complete" in out and f"Downloaded newer image for {registry}/library/busybox" \
        in out
    assert daemon.docker("images", "-q", "--no-trunc").stdout.split() == [config_digest]
    again = daemon.docker("pull", f"{registry}/library/busybox:latest").stdout
    assert "Already exists" in again and "Image is up to date" in again
    # a missing image is pulled by run itself
    run = daemon.docker("run", "--rm", f"{registry}/library/busybox:latest", "echo",
                        "Hello World!")
    assert run.stdout == "Hello World!\n"
    missing = daemon.docker("pull", f"{registry}/library/nosuch:1", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")
def test_docker_tag_push_rmi_pull_search_through_matoud(registry: str, daemon: Daemon,
                                                       busybox_archive: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    image_id = d.docker("images", "-q", "--no-trunc", "busybox").stdout.strip()
    d.docker("tag", "busybox", f"{registry}/busybox")
    out = d.docker("push", f"{registry}/busybox").stdout
    assert f"The push refers to repository [{registry}/busybox]" in out and "Pushed" in out
    assert "latest: digest: sha256:" in out
    again = d.docker("push", f"{registry}/busybox").stdout
    assert "Layer already exists" in again
    d.docker("rmi", f"{registry}/busybox")
    d.docker("pull", f"{registry}/busybox")
    assert d.docker("images", "-q", "--no-trunc", f"{registry}/busybox").stdout.strip() == \
        image_id  # the same image ID back
    status, body, _ = d.http("GET", f"/distribution/{registry}/busybox:latest/json")
    info = json.loads(body)
    assert status == 200 and info["Descriptor"]["digest"].startswith("sha256:")
    assert {"architecture": "amd64", "os": "linux"} in info["Platforms"] or \
        info["Platforms"][0]["os"] == "linux"
    found = d.docker("search", f"{registry}/busy").stdout.splitlines()
    assert found[0].split()[0] == "NAME" and found[1].split()[0] == "busybox"
    d.docker("rmi", f"{registry}/busybox")
    run = d.docker("run", "--rm", f"{registry}/busybox", "echo", "Hello World!")
    assert run.stdout == "Hello World!\n" and "Pulling from busybox" in run.stderr


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")
def test_token_auth_through_matoud(auth_registry: str, daemon: Daemon, busybox_archive: Path,
                                   tmp_path: Path) -> None:
    d = daemon
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    d.docker("load", "-i", str(busybox_archive))
    image = f"{auth_registry}/team/busybox:1"
    d.docker("tag", "busybox", image)
    denied = d.docker("push", image, check=False, env=env)
    assert denied.returncode != 0 and "unauthorized" in denied.stderr
    bad = d.docker("login", "-u", "peer", "--password-stdin", auth_registry, input="nope\n",
                   check=False, env=env)
    assert bad.returncode != 0
    d.docker("login", "-u", "peer", "--password-stdin", auth_registry, input="peerpass\n",
             env=env)
    assert "digest: sha256:" in d.docker("push", image, env=env).stdout
    d.docker("rmi", image)  # busybox keeps the layer: it is not fetched again
    assert "Already exists" in d.docker("pull", image, env=env).stdout
    # the registry's own Bearer flow answers the token a client asks for, per scope
    r = urllib.request.Request(f"http://{auth_registry}/v2/team/busybox/tags/list")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(r, timeout=10)
    assert e.value.code == 401 and 'scope="repository:team/busybox:pull"' in \
        e.value.headers["WWW-Authenticate"]


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[str]:
    """CNCF distribution 2.8 (Debian's docker-registry) on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "distribution.yml"
    config.write_text(f"""version: 0.1
storage:
  filesystem:
    rootdirectory: {tmp_path / "distribution"}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _until_serving(f"127.0.0.1:{port}", proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(not shutil.which("docker-registry") or not shutil.which("docker"),
                    reason="no docker-registry (CNCF distribution) or docker CLI")
def test_matoud_push_pull_against_distribution(distribution: str, daemon: Daemon,
                                               busybox_archive: Path) -> None:
    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    image_id = d.docker("images", "-q", "--no-trunc", "busybox").stdout.strip()
    image = f"{distribution}/viamatou/busybox:1"
    d.docker("tag", "busybox", image)
    assert "1: digest: sha256:" in d.docker("push", image).stdout
    d.docker("rmi", image)
    d.docker("pull", image)
    assert d.docker("images", "-q", "--no-trunc", image).stdout.strip() == image_id


@pytest.mark.skipif(not shutil.which("skopeo"), reason="no skopeo")
def test_skopeo_with_credentials(auth_registry: str, tmp_path: Path) -> None:
    src = _layout(tmp_path)
    index = json.loads((src / "index.json").read_text())
    ref = index["manifests"][0].get("annotations", {}).get(
        "org.opencontainers.image.ref.name", "latest")
    dest = f"docker://{auth_registry}/locked/busybox:1"
    anonymous = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false",
                                f"oci:{src}:{ref}", dest], capture_output=True, timeout=120)
    assert anonymous.returncode != 0
    for args in (["--dest-creds", "peer:peerpass", f"oci:{src}:{ref}", dest],
                 ["--src-creds", "peer:peerpass", dest, f"oci:{tmp_path / 'back'}:1"]):
        p = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false",
                            "--src-tls-verify=false", *args], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
    back = json.loads((tmp_path / "back" / "index.json").read_text())
    assert back["manifests"][0]["digest"] == index["manifests"][0]["digest"]


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")
def test_the_registry_runs_as_a_container_on_matou(daemon: Daemon,
                                                   busybox_archive: Path) -> None:
    """matou-registry in a matou container (the host's interpreter and this checkout
    bound read-only into busybox), published on 127.0.0.1, and matoud pushing to it."""
    import matou

    d = daemon
    d.docker("load", "-i", str(busybox_archive))
    src = str(Path(matou.__file__).resolve().parents[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binds = [f"{p}:{p}:ro" for p in ("/usr", "/lib", "/lib64", sys.prefix, src)
             if os.path.exists(p)]
    d.docker("run", "-d", "--name", "registry", "-p", f"127.0.0.1:{port}:5000",
             *[x for b in binds for x in ("-v", b)], "-v", "regdata:/var/lib/matou-registry",
             "busybox", os.path.join(sys.prefix, "bin", "python3"), REGISTRY, "serve",
             "--addr", "0.0.0.0:5000", "--insecure-public")
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).read()
            break
        except OSError:
            assert time.monotonic() < deadline, d.docker("logs", "registry").stderr
            time.sleep(0.1)
    image = f"127.0.0.1:{port}/inner/busybox:1"
    d.docker("tag", "busybox", image)
    assert "1: digest: sha256:" in d.docker("push", image).stdout
    d.docker("rmi", image)
    assert "Status: Downloaded newer image" in d.docker("pull", image).stdout


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")
def test_push_mounts_across_repositories_and_sends_big_blobs_in_chunks(
        auth_registry: str, daemon: Daemon, tmp_path: Path) -> None:
    """A 20 MB layer goes up in PATCHes; pushed again under another repository of the same
    registry it is mounted, not sent (the token asked for covers both repositories)."""
    d = daemon
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    d.docker("login", "-u", "peer", "--password-stdin", auth_registry, input="peerpass\n",
             env=env)
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / "blob").write_bytes(os.urandom(20 << 20))
    subprocess.run(["tar", "-C", str(tmp_path / "layer"), "-cf", str(tmp_path / "l.tar"),
                    "blob"], check=True, timeout=60)
    first, second = f"{auth_registry}/team/big:1", f"{auth_registry}/other/big:1"
    d.docker("import", str(tmp_path / "l.tar"), first)
    image_id = d.docker("image", "inspect", "-f", "{{.Id}}", first).stdout
    out = d.docker("push", first, env=env).stdout
    assert ": Pushed" in out and "digest: sha256:" in out, out
    d.docker("tag", first, second)
    out = d.docker("push", second, env=env).stdout
    assert ": Mounted from team/big" in out and ": Pushed" not in out, out
    digest = out.split("digest: ")[1].split()[0]
    assert json.loads(d.docker("image", "inspect", "-f", "{{json .RepoDigests}}",
                               first).stdout) == [f"{auth_registry}/other/big@{digest}",
                                                  f"{auth_registry}/team/big@{digest}"]
    d.docker("rmi", first, second)
    d.docker("pull", second, env=env)
    assert d.docker("image", "inspect", "-f", "{{.Id}}", second).stdout == image_id
    assert json.loads(d.docker("image", "inspect", "-f", "{{json .RepoDigests}}",
                               second).stdout) == [f"{auth_registry}/other/big@{digest}"]
    listed = d.docker("images", "--digests", "--format", "{{.Repository}} {{.Digest}}",
                      second).stdout
    assert listed == f"{auth_registry}/other/big {digest}\n"
