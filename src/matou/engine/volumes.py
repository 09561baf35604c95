"""Volumes with the local driver: named and anonymous, populated from the image on first
use, refused removal while a container uses them.

    <data-root>/volumes/<name>/_data        the volume's files
    <data-root>/volumes/<name>/volume.json  {Name, Driver, CreatedAt, Labels, Options,
                                             Anonymous}, written atomically
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from typing import Any

from matou.engine.events import EventBus
from matou.errors import FailedPrecondition, InvalidArgument, NotFound
from matou.oci import timestamps
from matou.shim.shim import atomic_json

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class VolumeService:
    def __init__(self, data_root: str, events: EventBus) -> None:
        self.root = os.path.join(data_root, "volumes")
        os.makedirs(self.root, 0o701, exist_ok=True)
        self.events = events

    def _meta(self, name: str) -> str:
        return os.path.join(self.root, name, "volume.json")

    def path(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def exists(self, name: str) -> bool:
        return os.path.exists(self._meta(name))

    def create(self, name: str | None = None, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None, driver: str = "local",
               anonymous: bool = False) -> dict[str, Any]:
        if driver not in ("", "local"):
            raise InvalidArgument(f"volume driver {driver!r} is not supported")
        if options:
            raise InvalidArgument("local volume options are not supported yet")
        name = name or uuid.uuid4().hex + uuid.uuid4().hex
        if not _NAME.match(name):
            raise InvalidArgument(f'"{name}" includes invalid characters for a local volume '
                                  'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
        if self.exists(name):
            return self.inspect(name)  # as dockerd: creating an existing volume is a no-op
        os.makedirs(self.path(name), 0o755, exist_ok=True)
        atomic_json(self._meta(name), {"Name": name, "Driver": "local",
                                       "CreatedAt": timestamps.format(),
                                       "Labels": labels or {}, "Options": options or {},
                                       "Anonymous": anonymous})
        self.events.emit("volume", "create", name, {"driver": "local"})
        return self.inspect(name)

    def inspect(self, name: str) -> dict[str, Any]:
        try:
            with open(self._meta(name)) as f:
                meta: dict[str, Any] = json.load(f)
        except (FileNotFoundError, ValueError):
            raise NotFound(f"get {name}: no such volume") from None
        return {"Name": name, "Driver": "local", "Mountpoint": self.path(name),
                "CreatedAt": meta["CreatedAt"], "Labels": meta.get("Labels") or {},
                "Options": meta.get("Options") or None, "Scope": "local",
                "Anonymous": bool(meta.get("Anonymous"))}

    def all(self) -> list[dict[str, Any]]:
        return [self.inspect(n) for n in sorted(os.listdir(self.root)) if self.exists(n)]

    def remove(self, name: str, in_use: set[str], force: bool = False) -> None:
        if not self.exists(name):
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        if name in in_use:
            raise FailedPrecondition(f"remove {name}: volume is in use")
        os.unlink(self._meta(name))  # forget first: a crash leaves only files to collect
        shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
        self.events.emit("volume", "destroy", name, {"driver": "local"})

    def populate(self, name: str, source: str) -> None:
        """Copy the image's files at a mount point into a new, empty volume (Docker's
        copy-up), keeping owners, modes, xattrs and links."""
        data = self.path(name)
        if os.listdir(data) or not os.path.isdir(source):
            return
        subprocess.run(["cp", "-a", f"{source}/.", data], check=True, capture_output=True)
