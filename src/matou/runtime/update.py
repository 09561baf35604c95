"""`update`: new resource limits for a live container, written to its cgroup and kept in
its record so that `state` and a later `update` see them."""

from __future__ import annotations

from typing import Any

from matou.errors import FailedPrecondition
from matou.oci import state as oci_state
from matou.runtime.store import Store


def merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def update(store: Store, container_id: str, resources: dict[str, Any]) -> None:
    rec = store.load(container_id)
    if store.status(rec) == oci_state.STOPPED:
        raise FailedPrecondition("container not running")
    rec.cgroup().set(resources)
    linux = rec.config.setdefault("linux", {})
    linux["resources"] = merge(linux.get("resources") or {}, resources)
    store.save(rec)
