"""`pause` and `resume`: freeze and thaw the container's cgroup."""

from __future__ import annotations

from matou.errors import FailedPrecondition
from matou.oci import state as oci_state
from matou.runtime.store import Store


def pause(store: Store, container_id: str) -> None:
    rec = store.load(container_id)
    status = store.status(rec)
    if status not in (oci_state.RUNNING, oci_state.CREATED):
        raise FailedPrecondition(f"cannot pause a container in the {status} state")
    rec.cgroup().freeze(True)


def resume(store: Store, container_id: str) -> None:
    rec = store.load(container_id)
    status = store.status(rec)
    if status != oci_state.PAUSED:
        raise FailedPrecondition(f"cannot resume a container in the {status} state")
    rec.cgroup().freeze(False)
