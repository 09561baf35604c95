"""`start`: refresh status, guard (only a `created` container starts), wake its init,
then run the poststart hooks (whose failure is only logged, as the spec says)."""

from __future__ import annotations

import errno
import os
import socket

from matou.errors import FailedPrecondition
from matou.linux import unixsock
from matou.oci import state as oci_state
from matou.runtime import log
from matou.runtime.store import Record, Store


def start(store: Store, container_id: str) -> Record:
    rec = store.load(container_id)
    status = store.status(rec)
    if status != oci_state.CREATED:
        raise FailedPrecondition(f"cannot start a container in the {status} state")
    start_handshake(store.init_socket(container_id))
    rec = rec._replace(started=True)
    store.save(rec)
    if (rec.config.get("hooks") or {}).get("poststart"):
        from matou.oci.runtime_spec import parse_spec
        from matou.runtime import hooks

        spec = parse_spec(rec.config)
        state = store.oci_state(rec, oci_state.RUNNING)
        for failure in hooks.run_all(spec.hooks.poststart, state, "poststart"):
            log.warning(failure)
    return rec


def start_handshake(path: str) -> None:
    """`start`: wake the init waiting on ``path`` and wait until it has exec'd (EOF) or
    failed (an error text)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        unixsock.connect(conn, path)
    except OSError as e:
        raise FailedPrecondition(f"container init is gone: {e.strerror}") from e
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    conn.sendall(b"start")
    chunks = []
    while True:
        try:
            data = conn.recv(65536)
        except OSError as e:
            if e.errno == errno.ECONNRESET:
                break
            raise
        if not data:
            break
        chunks.append(data)
    conn.close()
    if chunks:
        raise FailedPrecondition(b"".join(chunks).decode(errors="replace"))
