"""`delete`: refresh status, guard (only a `stopped` container, unless --force kills it
first), then remove its cgroup and state and run the poststop hooks."""

from __future__ import annotations

import signal
import time

from matou.errors import FailedPrecondition, NotFound
from matou.linux import proc
from matou.oci import state as oci_state
from matou.oci.runtime_spec import parse_spec
from matou.runtime import log
from matou.runtime.kill import signal_all
from matou.runtime.store import Store


def delete(store: Store, container_id: str, force: bool = False) -> None:
    try:
        rec = store.load(container_id)
    except NotFound:
        if force:
            store.remove(container_id)  # what a create killed half-way left, if anything
            return
        raise
    status = store.status(rec)
    if status != oci_state.STOPPED:
        if not force:
            raise FailedPrecondition(f"cannot delete container {container_id} that is not "
                                     f"stopped: {status}")
        signal_all(rec, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while proc.is_alive(rec.pid, rec.pid_start) and time.monotonic() < deadline:
            time.sleep(0.005)
    spec = parse_spec(rec.config)
    if spec.namespace("pid") is None:
        # without a pid namespace, the init's death does not end the other processes
        signal_all(rec, signal.SIGKILL)
    cg = rec.cgroup()
    for _ in range(200):
        if not cg.pids():
            break
        time.sleep(0.005)
    cg.destroy()
    if spec.namespace("mount") is None:
        from matou.runtime.rootfs import unmount_under

        unmount_under(rec.rootfs)
    store.remove(container_id)
    if spec.hooks.poststop:
        from matou.runtime import hooks

        state = store.oci_state(rec, oci_state.STOPPED)
        for failure in hooks.run_all(spec.hooks.poststop, state, "poststop"):
            log.warning(failure)
