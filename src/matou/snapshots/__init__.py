"""Overlay and native snapshotters (containerd's vocabulary: key, name, parent).

May import: linux, oci, errors.
"""

from matou.snapshots.base import ACTIVE, COMMITTED, VIEW, Info, Mount, Snapshotter
from matou.snapshots.native import NativeSnapshotter
from matou.snapshots.overlay import OverlaySnapshotter

__all__ = ["ACTIVE", "COMMITTED", "VIEW", "Info", "Mount", "NativeSnapshotter",
           "OverlaySnapshotter", "Snapshotter", "overlay_supported"]


def overlay_supported(root: str) -> bool:
    """Whether an overlay mount works under ``root`` (not, e.g., on overlayfs itself)."""
    import os
    import tempfile

    from matou.linux import libc

    os.makedirs(root, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as d:
        for sub in ("l1", "l2", "u", "w", "m"):
            os.mkdir(os.path.join(d, sub))
        try:
            libc.mount("overlay", os.path.join(d, "m"), "overlay", 0,
                       f"lowerdir={d}/l1:{d}/l2,upperdir={d}/u,workdir={d}/w")
        except Exception:
            return False
        libc.umount2(os.path.join(d, "m"), libc.MNT_DETACH)
        return True
