"""Container records under the runtime root, and a container's status derived from /proc.

    <root>/                       default /run/matou-runtime, mode 0700
      <id>/                       one directory per container, mode 0711
        state.json                Record, replaced atomically (tmp + rename)
        init.sock                 exists while the container is `created`; `start` connects
                                  to it to let the init process exec the user program

The status is never trusted from disk alone: a pid that is gone, a zombie, or a pid reused
by another process (start time differs) is `stopped`; a frozen cgroup is `paused`.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, NamedTuple

from matou.cgroups import Manager
from matou.errors import AlreadyExists, InvalidArgument, NotFound, from_oserror
from matou.linux import proc
from matou.oci import state as oci_state

DEFAULT_ROOT = "/run/matou-runtime"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+.\-]*$")


def check_id(container_id: str) -> None:
    if not _ID.match(container_id) or len(container_id) > 1024:
        raise InvalidArgument(f"invalid container id {container_id!r}")


class Record(NamedTuple):
    id: str
    pid: int
    pid_start: int | None
    bundle: str
    rootfs: str
    created: str
    owner: str
    cgroup_path: str
    cgroup_relative: bool
    config: dict[str, Any]
    annotations: dict[str, str]
    started: bool = False

    def cgroup(self) -> Manager:
        return Manager(self.cgroup_path, self.cgroup_relative)


class Store:
    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = os.path.abspath(root)

    @property
    def seccomp_cache(self) -> str:
        """Generated seccomp programs (root-only; beside the state root, not in it)."""
        return self.root + ".seccomp"

    def dir(self, container_id: str) -> str:
        check_id(container_id)
        return os.path.join(self.root, container_id)

    def init_socket(self, container_id: str) -> str:
        return os.path.join(self.dir(container_id), "init.sock")

    def reserve(self, container_id: str) -> str:
        """Create the container's directory; the id is taken once this returns."""
        d = self.dir(container_id)
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            os.mkdir(d, 0o711)
        except FileExistsError as e:
            raise AlreadyExists(f"container with id exists: {container_id}") from e
        except OSError as e:
            raise from_oserror("mkdir", d, e) from e
        return d

    def save(self, rec: Record) -> None:
        d = self.dir(rec.id)
        tmp = os.path.join(d, ".state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(rec._asdict(), f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(d, "state.json"))

    def load(self, container_id: str) -> Record:
        path = os.path.join(self.dir(container_id), "state.json")
        try:
            with open(path) as f:
                raw = json.load(f)
        except FileNotFoundError as e:
            raise NotFound(f"container does not exist: {container_id}") from e
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"corrupt state {path}: {e}") from e
        return Record(**raw)

    def ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if os.path.exists(os.path.join(self.root, n, "state.json"))]

    def remove(self, container_id: str) -> None:
        d = self.dir(container_id)
        for name in ("state.json", "init.sock", ".state.json.tmp"):
            try:
                os.unlink(os.path.join(d, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass

    def status(self, rec: Record) -> str:
        if not proc.is_alive(rec.pid, rec.pid_start):
            return oci_state.STOPPED
        if rec.cgroup().is_frozen():
            return oci_state.PAUSED
        if os.path.exists(self.init_socket(rec.id)):
            return oci_state.CREATED
        return oci_state.RUNNING

    def oci_state(self, rec: Record, status: str | None = None) -> oci_state.State:
        return oci_state.State(
            id=rec.id,
            status=status or self.status(rec),
            pid=rec.pid,
            bundle=rec.bundle,
            annotations=rec.annotations,
        )
