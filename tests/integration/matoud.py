"""A matoud of its own per test (unix socket under /run, data under tmp), the real docker CLI
pointed at it, and a busybox image archive to load into it. Teardown removes every
container, stops the daemon and its fork server, and leaves no mount or cgroup behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from matou.images import create, formats
from matou.images.setup import open_store

MATOUD = os.path.join(os.path.dirname(sys.executable), "matoud")
pytestmark = pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI")


class Daemon:
    def __init__(self, tmp: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.run = Path(f"/run/matou-test-{tag}")
        self.bridge = f"mt{tag}"  # its own bridge and netfilter chains, apart from any other
        self.chain_prefix = f"MATOU-{self.bridge.upper()}"
        self.data = tmp / "data"
        self.sock = self.run / "matou.sock"
        self.log = tmp / "matoud.log"
        self.extra: list[str] = []  # more matoud options, for the next start
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [MATOUD, "-H", self.host, "--data-root", str(self.data), "--exec-root",
                 str(self.run), "--config-file", "/nonexistent", "--bridge", self.bridge,
                 *self.extra],
                stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while not self._ping():
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "matoud did not come up"
            time.sleep(0.05)

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(self.sock))
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return b"OK" in s.recv(4096)
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # a test must not leave a daemon behind, even failing
                self.proc.wait()
                raise

    def docker(self, *args: str, check: bool = True, **kw: object
               ) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(["docker", "-H", self.host, *args], capture_output=True, text=True,
                           timeout=60, **kw)  # type: ignore[call-overload]
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {p.returncode}\n{p.stderr}")
        return p  # type: ignore[no-any-return]

    def http(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes, str]:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.sock))
            s.sendall(f"{method} {path} HTTP/1.0\r\nContent-Length: {len(body)}\r\n\r\n"
                      .encode() + body)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, payload = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), payload, head.decode(errors="replace")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path)
    d.start()
    try:
        yield d
    finally:
        clean_up(d)


def clean_up(d: Daemon) -> None:
    """Remove the daemon's containers, stop it and remove whatever it (or a failing test)
    left: processes, cgroups, mounts, its bridge and netfilter chains."""
    if d.proc is not None and d.proc.poll() is None:
        try:
            ids = d.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                d.docker("rm", "-f", *ids, check=False)
        except subprocess.TimeoutExpired:
            pass  # the daemon and what it left are killed below all the same
    try:
        d.stop()
    except subprocess.TimeoutExpired:
        pass
    if d.proc is not None:  # its fork server goes when the daemon does; make sure
        subprocess.run(["pkill", "-9", "-f", f"matoud -H {d.host} "], capture_output=True)
        # and the native supervisors of containers a failing test left running
        subprocess.run(["pkill", "-9", "-f", f"matou-supervise {d.run}/"],
                       capture_output=True)
    _kill_containers(d)
    leftovers(d)
    shutil.rmtree(d.run, ignore_errors=True)
    subprocess.run(["umount", "-R", "-l", str(d.data)], capture_output=True)
    for cg in Path("/sys/fs/cgroup").glob("*/matou"):
        with contextlib.suppress(OSError):
            cg.rmdir()


def _kill_containers(d: Daemon) -> None:
    """Containers a failed test left running (their daemon gone): thawed, killed, and
    their cgroups removed."""
    root = d.data / "containers"
    for cid in (os.listdir(root) if root.is_dir() else []):
        with contextlib.suppress(OSError):
            Path(f"/sys/fs/cgroup/freezer/matou/{cid}/freezer.state").write_text("THAWED")
        for procs in Path("/sys/fs/cgroup").glob(f"*/matou/{cid}/cgroup.procs"):
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 5
        for cg in Path("/sys/fs/cgroup").glob(f"*/matou/{cid}"):
            while time.monotonic() < deadline:
                try:
                    cg.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


def netfilter_rules(prefix: str) -> list[str]:
    """Every iptables and ip6tables line (filter and nat) that names one of the chains
    ``prefix*`` (ip6tables lines marked "v6")."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    found = [line for line in out.splitlines() if prefix in line]
    if shutil.which("ip6tables-save"):
        out6 = subprocess.run(["ip6tables-save"], capture_output=True, text=True).stdout
        found += [f"v6 {line}" for line in out6.splitlines() if prefix in line]
    return found


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(path) + "/")]


def leftovers(d: Daemon) -> list[str]:
    """What a stopped daemon left behind (and, as it is found, remove it): its bridge,
    its rules, its network namespaces. The tests assert this is empty."""
    found: list[str] = []
    if subprocess.run(["ip", "link", "show", d.bridge], capture_output=True).returncode == 0:
        found.append(f"link {d.bridge}")
        subprocess.run(["ip", "link", "del", d.bridge], capture_output=True)
    rules = netfilter_rules(d.chain_prefix)
    if rules:
        found += rules
        for tool in ("iptables", "ip6tables"):
            if not shutil.which(tool):
                continue
            for table in ("filter", "nat"):
                listing = subprocess.run([tool, "-t", table, "-S"], capture_output=True,
                                         text=True).stdout
                for line in listing.splitlines():
                    if line.startswith("-A ") and d.chain_prefix in line.split(" -j ")[-1] \
                            and not line.split()[1].startswith(d.chain_prefix):
                        subprocess.run([tool, "-t", table, "-D", *line.split()[1:]],
                                       capture_output=True)
                for chain in ("", "-FWD", "-POST"):
                    subprocess.run([tool, "-t", table, "-F", d.chain_prefix + chain],
                                   capture_output=True)
                    subprocess.run([tool, "-t", table, "-X", d.chain_prefix + chain],
                                   capture_output=True)
    for m in mounts_under(d.run):
        found.append(f"mount {m}")
        subprocess.run(["umount", "-l", m], capture_output=True)
    return found


@pytest.fixture(scope="module")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bb-store")
    store = open_store(str(root / "data"), "native")
    create.build_busybox(store)
    out = root / "busybox.tar"
    with open(out, "wb") as f:
        formats.save_archive(store, ["busybox:latest"], f)
    return out


PEER_DOCKER = "unix:///run/peer-docker.sock"


def peer_docker_answers() -> bool:
    """True when a peer dockerd (../shared/peers/dockerd.sh) answers on its socket; a socket
    file left behind by a stopped one does not count."""
    if not shutil.which("docker"):
        return False
    try:
        p = subprocess.run(["docker", "-H", PEER_DOCKER, "version", "-f", "{{.Server.Version}}"],
                           capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return False
    return p.returncode == 0 and bool(p.stdout.strip())


@pytest.fixture
def peer_docker(busybox_archive: Path) -> str:
    """The peer dockerd's address, with busybox:latest loaded into it; skips without one."""
    if not peer_docker_answers():
        pytest.skip("no peer dockerd answers on " + PEER_DOCKER)
    docker = ["docker", "-H", PEER_DOCKER]
    if subprocess.run([*docker, "image", "inspect", "busybox:latest"], capture_output=True,
                      timeout=30).returncode != 0:
        subprocess.run([*docker, "load", "-i", str(busybox_archive)], check=True,
                       capture_output=True, timeout=120)
    return PEER_DOCKER
