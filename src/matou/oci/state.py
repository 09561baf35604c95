"""The OCI runtime state record, as `state` prints it and hooks read it on stdin."""

from __future__ import annotations

from typing import Any, NamedTuple

OCI_VERSION = "1.2.0"

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"


class State(NamedTuple):
    id: str
    status: str
    pid: int
    bundle: str
    annotations: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": self.status,
            "bundle": self.bundle,
        }
        if self.status != STOPPED:
            out["pid"] = self.pid
        if self.annotations:
            out["annotations"] = self.annotations
        return out
