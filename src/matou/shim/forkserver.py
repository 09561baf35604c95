"""The fork server: a single-threaded process forked from matoud before it starts any
thread, with everything a shim needs already imported. matoud asks it for shims; it
forks each twice (the shim is nobody's child, so nothing ties it to the daemon's life)
and reports the shim's pid.

    matoud ──socketpair──► fork server ──fork──► (intermediate) ──fork──► shim
                                                   exits at once
"""

from __future__ import annotations

import json
import os
import socket
import threading
from typing import Any, NoReturn

from matou.errors import SystemError_


def _serve(sock: socket.socket) -> NoReturn:
    # everything a shim imports lazily is imported now, while we may still import
    from matou.oci import runtime_spec  # noqa: F401
    from matou.runtime import create, delete, exec, foreground, start, store  # noqa: F401
    from matou.shim import shim  # imported here, once, before any fork of a shim

    while True:
        try:
            data = sock.recv(1 << 20)
        except InterruptedError:
            continue
        if not data:
            os._exit(0)  # the daemon is gone
        conf: dict[str, Any] = json.loads(data)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            sock.close()
            os.close(r)
            grandchild = os.fork()
            if grandchild == 0:
                os.close(w)
                null = os.open("/dev/null", os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.close(null)
                shim.run(conf)
            os.write(w, str(grandchild).encode())
            os._exit(0)
        os.close(w)
        shim_pid = int(os.read(r, 64) or b"0")
        os.close(r)
        os.waitpid(pid, 0)
        sock.send(json.dumps({"pid": shim_pid}).encode())


class ForkServer:
    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.lock = threading.Lock()

    @classmethod
    def start(cls) -> ForkServer:
        """Call while the process is still single-threaded."""
        if threading.active_count() > 1:
            raise SystemError_("fork server", "start", 35)  # EDEADLK: threads exist
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            try:
                _serve(theirs)
            finally:
                os._exit(1)
        theirs.close()
        return cls(ours, pid)

    def spawn(self, conf: dict[str, Any]) -> int:
        """Fork a shim for ``conf``; returns its pid (blocking: call from a thread)."""
        with self.lock:
            self.sock.send(json.dumps(conf).encode())
            reply = self.sock.recv(4096)
        if not reply:
            raise SystemError_("fork server", "spawn", 32)
        return int(json.loads(reply)["pid"])

    def stop(self) -> None:
        self.sock.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
