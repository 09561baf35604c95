"""Opening the image store under a data root: content, snapshots and image records, with
the start-up cleanup that makes a crash at any point harmless.

    <data-root>/content/        blobs (matou.content)
    <data-root>/snapshots/      overlayfs snapshots   (or snapshots-native/)
    <data-root>/images/         image records and tags
"""

from __future__ import annotations

import os

from matou.content import ContentStore
from matou.images.store import ImageStore
from matou.snapshots import NativeSnapshotter, OverlaySnapshotter, overlay_supported

DEFAULT_ROOT = "/var/lib/matou"


def open_store(root: str, snapshotter: str = "auto") -> ImageStore:
    os.makedirs(root, 0o711, exist_ok=True)
    snap_root = os.path.join(root, "snapshots")
    if snapshotter == "auto":
        snapshotter = "overlayfs" if overlay_supported(snap_root) else "native"
    snaps = (OverlaySnapshotter if snapshotter == "overlayfs" else NativeSnapshotter)(
        os.path.join(root, "snapshots" if snapshotter == "overlayfs" else "snapshots-native"))
    content = ContentStore(os.path.join(root, "content"))
    content.cleanup()
    snaps.cleanup()
    store = ImageStore(os.path.join(root, "images"), content, snaps)
    store.cleanup()
    return store
