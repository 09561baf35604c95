"""`start`: refresh status, guard (only a `created` container starts), wake its init,
then run the poststart hooks (whose failure is only logged, as the spec says)."""

from __future__ import annotations

from matou.errors import FailedPrecondition, MatouError
from matou.oci import state as oci_state
from matou.oci.runtime_spec import parse_spec
from matou.runtime import hooks, log
from matou.runtime.create import start_handshake
from matou.runtime.store import Record, Store


def start(store: Store, container_id: str) -> Record:
    rec = store.load(container_id)
    status = store.status(rec)
    if status != oci_state.CREATED:
        raise FailedPrecondition(f"cannot start a container in the {status} state")
    start_handshake(store.init_socket(container_id))
    rec.started = True
    store.save(rec)
    spec = parse_spec(rec.config)
    if spec.hooks.poststart:
        try:
            hooks.run(spec.hooks.poststart, store.oci_state(rec, oci_state.RUNNING), "poststart")
        except MatouError as e:
            log.warning(str(e))
    return rec
