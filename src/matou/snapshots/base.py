"""Snapshotters: containerd's vocabulary and on-disk bookkeeping, shared by both kinds.

    key     an active (writable) or view snapshot, named by its user
    name    a committed (read-only) snapshot, usable as a parent
    parent  the committed snapshot a new one starts from

    <root>/
      metadata.json             every snapshot: {key|name: {id, kind, parent, created}},
                                replaced atomically (tmp + fsync + rename) under lock
      lock                      flock(2) held by every change
      <id>/fs                   the snapshot's files (overlay: its upper dir only)
      <id>/work                 overlayfs work dir (overlay, active snapshots)

A snapshot directory exists before its metadata names it, and metadata forgets it before
the directory goes: after a crash, ``cleanup`` removes the directories nobody names.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from matou.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from matou.linux import jsonfile


def _empty() -> dict[str, Any]:
    return {"next": 1, "snapshots": {}}


ACTIVE = "active"
VIEW = "view"
COMMITTED = "committed"


class Mount(NamedTuple):
    """A mount(2) to perform, as containerd returns them (options as for mount -o)."""
    type: str
    source: str
    options: tuple[str, ...]


class Info(NamedTuple):
    name: str
    kind: str
    parent: str | None
    id: str
    created: float


class Snapshotter:
    """Bookkeeping common to the overlay and native snapshotters."""

    kind = "base"

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, 0o700, exist_ok=True)
        self._meta_path = os.path.join(root, "metadata.json")

    # -- metadata ----------------------------------------------------------------------------

    def _locked(self) -> AbstractContextManager[dict[str, Any]]:
        return jsonfile.locked(self._meta_path, os.path.join(self.root, "lock"), _empty)

    def _load(self) -> dict[str, Any]:
        return jsonfile.read(self._meta_path, _empty)

    def _save(self, meta: dict[str, Any]) -> None:
        jsonfile.write_atomic(self._meta_path, meta)

    def dir(self, sid: str) -> str:
        return os.path.join(self.root, sid)

    def _new(self, meta: dict[str, Any], key: str, kind: str, parent: str | None) -> str:
        if not key or key.startswith("/") or "\0" in key:
            raise InvalidArgument(f"snapshot key {key!r}: invalid")
        snaps = meta["snapshots"]
        if key in snaps:
            raise AlreadyExists(f"snapshot {key}: already exists")
        if parent is not None:
            p = snaps.get(parent)
            if p is None:
                raise NotFound(f"snapshot parent {parent}: not found")
            if p["kind"] != COMMITTED:
                raise FailedPrecondition(f"snapshot parent {parent}: not committed")
        sid = str(meta["next"])
        meta["next"] += 1
        d = self.dir(sid)
        os.makedirs(os.path.join(d, "fs"), 0o755)
        snaps[key] = {"id": sid, "kind": kind, "parent": parent, "created": time.time()}
        return sid

    def _info(self, key: str, raw: dict[str, Any]) -> Info:
        return Info(key, raw["kind"], raw["parent"], raw["id"], raw["created"])

    def stat(self, key: str) -> Info:
        raw = self._load()["snapshots"].get(key)
        if raw is None:
            raise NotFound(f"snapshot {key}: not found")
        return self._info(key, raw)

    def exists(self, key: str) -> bool:
        return key in self._load()["snapshots"]

    def walk(self) -> list[Info]:
        return [self._info(k, v) for k, v in sorted(self._load()["snapshots"].items())]

    def chain(self, key: str) -> list[Info]:
        """``key`` and its ancestors, nearest first."""
        snaps = self._load()["snapshots"]
        out = []
        k: str | None = key
        while k is not None:
            raw = snaps.get(k)
            if raw is None:
                raise NotFound(f"snapshot {k}: not found")
            out.append(self._info(k, raw))
            k = raw["parent"]
        return out

    def fs_dir(self, key: str) -> str:
        """Where this snapshot's own files live (for overlay: only its layer)."""
        return os.path.join(self.dir(self.stat(key).id), "fs")

    # -- life cycle ------------------------------------------------------------------------

    def prepare(self, key: str, parent: str | None = None) -> list[Mount]:
        with self._locked() as meta:
            sid = self._new(meta, key, ACTIVE, parent)
            self._populate(meta, sid, parent, writable=True)
        return self.mounts(key)

    def view(self, key: str, parent: str | None = None) -> list[Mount]:
        with self._locked() as meta:
            sid = self._new(meta, key, VIEW, parent)
            self._populate(meta, sid, parent, writable=False)
        return self.mounts(key)

    def commit(self, name: str, key: str) -> None:
        """Turn active ``key`` into committed ``name``."""
        self._commit(name, key, rebase=False, parent=None)

    def commit_onto(self, name: str, key: str, parent: str | None) -> None:
        """Commit ``key`` as ``name`` on top of ``parent`` whatever it was prepared on:
        overlay layers are unpacked side by side, in parallel, then chained."""
        if not self.can_rebase:
            raise FailedPrecondition(f"{self.kind} snapshots cannot change parent at commit")
        self._commit(name, key, rebase=True, parent=parent)

    can_rebase = False

    def _commit(self, name: str, key: str, rebase: bool, parent: str | None) -> None:
        with self._locked() as meta:
            snaps = meta["snapshots"]
            raw = snaps.get(key)
            if raw is None:
                raise NotFound(f"snapshot {key}: not found")
            if raw["kind"] != ACTIVE:
                raise FailedPrecondition(f"snapshot {key}: not active")
            if name in snaps:
                raise AlreadyExists(f"snapshot {name}: already exists")
            if rebase:
                if parent is not None and snaps.get(parent, {}).get("kind") != COMMITTED:
                    raise FailedPrecondition(f"snapshot parent {parent}: not committed")
                raw["parent"] = parent
            raw["kind"] = COMMITTED
            snaps[name] = snaps.pop(key)
            shutil.rmtree(os.path.join(self.dir(raw["id"]), "work"), ignore_errors=True)

    def remove(self, key: str) -> None:
        with self._locked() as meta:
            snaps = meta["snapshots"]
            raw = snaps.get(key)
            if raw is None:
                raise NotFound(f"snapshot {key}: not found")
            children = [k for k, v in snaps.items() if v["parent"] == key]
            if children:
                raise FailedPrecondition(f"snapshot {key}: has dependents {children[:3]}")
            del snaps[key]
            self._save(meta)  # forget first, then delete: a crash leaves only garbage
        shutil.rmtree(self.dir(raw["id"]), ignore_errors=True)

    def cleanup(self) -> list[str]:
        """Remove directories that no snapshot names (left by a crash)."""
        known = {v["id"] for v in self._load()["snapshots"].values()}
        removed = []
        for name in os.listdir(self.root):
            if name.isdigit() and name not in known:
                shutil.rmtree(self.dir(name), ignore_errors=True)
                removed.append(name)
        return removed

    def usage(self, key: str) -> tuple[int, int]:
        """(bytes, inodes) of this snapshot's own files: the sum of file sizes, each
        hardlinked inode once — what Docker reports as a layer's size."""
        size = inodes = 0
        seen: set[int] = set()
        for dirpath, dirnames, filenames in os.walk(self.fs_dir(key)):
            for n in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, n))
                inodes += 1
                if st.st_nlink > 1:
                    if st.st_ino in seen:
                        continue
                    seen.add(st.st_ino)
                size += st.st_size if not os.path.isdir(os.path.join(dirpath, n)) else 0
        return size, inodes

    # -- per kind ----------------------------------------------------------------------------

    def _populate(self, meta: dict[str, Any], sid: str, parent: str | None,
                  writable: bool) -> None:
        raise NotImplementedError

    def mounts(self, key: str) -> list[Mount]:
        raise NotImplementedError

    @property
    def whiteout_mode(self) -> str:
        """How a layer must be applied into ``fs_dir`` of a prepared snapshot."""
        raise NotImplementedError
