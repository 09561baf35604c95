"""The fork server: a single-threaded process with everything a shim needs already
imported, and nothing else. matoud asks it for shims; it forks each twice (the shim is
nobody's child, so nothing ties it to the daemon's life) and reports the shim's pid.

    matoud ──socketpair──► fork server ──fork──► (intermediate) ──fork──► shim
                           (python -m               exits at once
                            matou.shim.forkserver)

It is a fresh interpreter (started by matoud before any thread of its own), not a fork of
matoud: a shim then carries only the runtime and the shim — about half the memory of a
fork of the daemon with aiohttp and the engine in it. Its command line ends
with matoud's own, so that `ps` and `pkill -f` tell which daemon it (and each shim
forked from it) belongs to.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
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
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4)
        except InterruptedError:
            continue
        if not data:
            os._exit(0)  # the daemon is gone
        conf: dict[str, Any] = json.loads(data)
        if fds:
            conf["fds"] = fds  # passed on to the shim: inheritable in its process only
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
                if conf.get("kind") == "exec":
                    shim.run_exec(conf)
                shim.run(conf)
            os.write(w, str(grandchild).encode())
            os._exit(0)
        os.close(w)
        for fd in fds:
            os.close(fd)
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
        ours.set_inheritable(False)
        proc = subprocess.Popen(
            [sys.executable, "-m", "matou.shim.forkserver", str(theirs.fileno()), "--",
             *sys.argv], pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        return cls(ours, proc.pid)

    def spawn(self, conf: dict[str, Any], fds: tuple[int, ...] = ()) -> int:
        """Fork a shim for ``conf`` (handing it ``fds``); returns its pid (blocking: call
        from a thread)."""
        with self.lock:
            socket.send_fds(self.sock, [json.dumps(conf).encode()], list(fds))
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


if __name__ == "__main__":
    _serve(socket.socket(fileno=int(sys.argv[1])))
