"""The overlayfs snapshotter: each snapshot holds only its own layer; an active snapshot
is an overlay mount of its upper dir over its ancestors' dirs, so read-only layers are
shared by every container and a container's disk cost is its writes alone.

Layers are unpacked straight into a snapshot's upper dir, with overlayfs's own whiteout
format (0:0 character devices, ``trusted.overlay.opaque``): no mount is needed to unpack,
and layers do not depend on each other, so they can be unpacked in parallel.
"""

from __future__ import annotations

import os
from typing import Any

from matou.snapshots.base import ACTIVE, Mount, Snapshotter


class OverlaySnapshotter(Snapshotter):
    kind = "overlayfs"
    can_rebase = True

    @property
    def whiteout_mode(self) -> str:
        return "overlay"

    def _populate(self, meta: dict[str, Any], sid: str, parent: str | None,
                  writable: bool) -> None:
        if writable:
            os.makedirs(os.path.join(self.dir(sid), "work"), 0o700)

    def mounts(self, key: str) -> list[Mount]:
        chain = self.chain(key)
        me, ancestors = chain[0], chain[1:]
        lowers = [os.path.join(self.dir(i.id), "fs") for i in ancestors]
        own = os.path.join(self.dir(me.id), "fs")
        if me.kind == ACTIVE:
            if not lowers:
                return [Mount("bind", own, ("rbind", "rw"))]
            return [Mount("overlay", "overlay", (
                f"workdir={os.path.join(self.dir(me.id), 'work')}",
                f"upperdir={own}",
                "lowerdir=" + ":".join(lowers),
            ))]
        # a view: read-only; overlay wants two lowers at least, a single one is a bind
        if len(lowers) <= 1:
            return [Mount("bind", lowers[0] if lowers else own, ("rbind", "ro"))]
        return [Mount("overlay", "overlay", ("lowerdir=" + ":".join(lowers),))]
