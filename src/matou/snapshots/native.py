"""The native snapshotter: every snapshot is a full copy of its parent. Slower and
bigger, but it works where overlayfs cannot (nested in a container, odd filesystems)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from matou.errors import SystemError_
from matou.snapshots.base import VIEW, Mount, Snapshotter


class NativeSnapshotter(Snapshotter):
    kind = "native"

    @property
    def whiteout_mode(self) -> str:
        return "delete"

    def _populate(self, meta: dict[str, Any], sid: str, parent: str | None,
                  writable: bool) -> None:
        if parent is None:
            return
        src = os.path.join(self.dir(meta["snapshots"][parent]["id"]), "fs")
        dst = os.path.join(self.dir(sid), "fs")
        # cp keeps owners, modes, xattrs, hardlinks, sparse files; reflinks where the fs can
        p = subprocess.run(["cp", "-a", "--reflink=auto", "--sparse=always", f"{src}/.", dst],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemError_("copy snapshot", src, 5) from RuntimeError(p.stderr)

    def mounts(self, key: str) -> list[Mount]:
        info = self.stat(key)
        own = os.path.join(self.dir(info.id), "fs")
        return [Mount("bind", own, ("rbind", "ro" if info.kind == VIEW else "rw"))]
