"""Fixtures for root-only tests: busybox bundles and a matou-runtime with its own state root.

Every container a test makes is force-deleted at teardown, and the test fails if it
left a cgroup, a state directory or a process behind.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from matou.oci.default_spec import default_spec
from tests.integration.matoud import busybox_archive, daemon, peer_docker  # noqa: F401  (fixtures)

RUNTIME = os.path.join(os.path.dirname(sys.executable), "matou-runtime")
BUSYBOX = "/bin/busybox"



def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="integration tests need root")
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed")
    r = tmp_path_factory.mktemp("template") / "rootfs"
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "etc", "root", "tmp",
              "var", "run"):
        (r / d).mkdir(parents=True)
    os.chmod(r / "tmp", 0o1777)
    shutil.copy(BUSYBOX, r / "bin/busybox")
    subprocess.run(["chroot", str(r), "/bin/busybox", "--install", "-s"], check=True)
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                  "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (r / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return r


@dataclass
class Bundle:
    path: Path
    spec: dict[str, Any]

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def args(self, *argv: str) -> Bundle:
        self.spec["process"]["args"] = list(argv)
        return self.write()

    def write(self) -> Bundle:
        (self.path / "config.json").write_text(json.dumps(self.spec, indent=1))
        return self


@pytest.fixture
def bundle(tmp_path: Path, rootfs_template: Path) -> Bundle:
    b = tmp_path / "bundle"
    b.mkdir()
    subprocess.run(["cp", "-a", str(rootfs_template), str(b / "rootfs")], check=True)
    spec = copy.deepcopy(default_spec())
    spec["process"]["terminal"] = False
    spec["root"]["readonly"] = False
    return Bundle(b, spec).args("true")


@dataclass
class Runtime:
    root: Path
    ids: list[str] = field(default_factory=list)

    def new_id(self) -> str:
        cid = f"matou-test-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def __call__(self, *args: str, timeout: float = 30, check: bool = False,
                 input: str | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
        cmd = [RUNTIME, "--root", str(self.root), *args]
        # files, not pipes: a created container keeps the caller's stdio open (as with
        # runc), so waiting for a pipe's EOF would wait for the container's death
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            r = subprocess.run(cmd, stdout=out, stderr=err, text=True, timeout=timeout,
                               input=input, **kw)
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(cmd, r.returncode, out.read(), err.read())
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def run(self, b: Bundle, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        if argv:
            b.args(*argv)
        return self("run", "--bundle", str(b.path), self.new_id(), timeout=timeout)

    def state(self, cid: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self("state", cid, check=True).stdout)
        return out


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    r = Runtime(tmp_path / "state")
    yield r
    for cid in r.ids:
        r("delete", "--force", cid, timeout=30)
    leftovers = [cid for cid in r.ids if (r.root / cid).exists()]
    cgroups = [p for cid in r.ids for p in Path("/sys/fs/cgroup").glob(f"*/{cid}")]
    for p in cgroups:
        os.rmdir(p)
    assert not leftovers, f"state left behind: {leftovers}"
    assert not cgroups, f"cgroups left behind: {cgroups}"
