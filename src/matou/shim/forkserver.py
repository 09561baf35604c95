"""The fork server: a single-threaded process with everything a shim needs already
imported, and nothing else. matoud asks it for shims; it forks each and reports its pid.
A shim leads a session of its own, and the kernel reaps it (SIGCHLD is ignored here), so
nothing ties it to the fork server's or the daemon's life.

    matoud ──socketpair──► fork server ──fork──► shim (or an exec's helper)
                           (python -m
                            matou.shim.forkserver)

It is a fresh interpreter, not a fork of matoud: a shim then carries only the runtime and
the shim — about half the memory of a fork of the daemon with aiohttp and the engine in it.
It is spawned with fork+exec (subprocess), which is safe from a threaded daemon. Its
command line ends with matoud's own, so that `ps` and `pkill -f` tell which daemon it (and
each shim forked from it) belongs to.

matoud starts it when first needed — a container or exec create warms it up, so that the
start after it finds it importing or ready — and lets it go after IDLE_STOP seconds without
a spawn. Shims and exec helpers do not depend on it once forked, so an idle daemon holds
no second interpreter (13 MiB).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, NoReturn

from matou.errors import SystemError_


def _serve(sock: socket.socket) -> NoReturn:
    # everything a shim imports lazily is imported now, while we may still import
    from matou.oci import runtime_spec  # noqa: F401
    from matou.runtime import create, delete, exec, foreground, start, store  # noqa: F401
    from matou.shim import shim  # imported here, once, before any fork of a shim

    _warm_up()
    # what is here now stays: a collection in a shim need not walk it, which would copy
    # its pages out of this process's, one by one
    gc.freeze()
    # shims are our children, but nothing of ours waits for them: the kernel reaps them,
    # and a shim is a session leader of its own (setsid), untouched when we go
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)

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
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # a shim reaps its own children
            sock.close()
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)
            if conf.get("kind") == "exec":
                shim.run_exec(conf)
            shim.run(conf)
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())


def _warm_up() -> None:
    """Run the parsing every shim and exec helper does, a few times, here: Python 3.11
    specializes bytecode as it runs it, and what is specialized here is inherited by
    every fork, not redone (and its pages copied) in each."""
    from matou.oci.default_spec import default_spec
    from matou.oci.runtime_spec import parse_process, parse_spec
    from matou.runtime.exec import native_exec
    from matou.runtime.process import prepare

    native_exec()  # its sealed copy, made once here and inherited by every helper

    raw = default_spec()
    raw["linux"]["seccomp"] = {  # the shape of Docker's profile, for its parsing
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]}
    text = json.dumps(raw)
    for _ in range(16):
        obj = json.loads(text)
        spec = parse_spec(obj)
        repr(spec.seccomp)  # the key of the BPF cache (matou.linux.seccomp.program)
        if spec.process is not None:
            prepare(spec.process, spec._replace(seccomp=None))
        parse_process(obj["process"])


IDLE_STOP = 300.0  # seconds without a spawn before the fork server is let go


class ForkServer:
    """matoud's handle on its fork server. Thread-safe: spawn, warm and stop_if_idle
    block, so call them from a worker thread."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.pid = 0
        self.lock = threading.Lock()  # held for a whole request and reply, or a launch
        self.last_use = 0.0

    def _launch(self) -> socket.socket:
        # with self.lock held; returns at once, the server imports while we go on
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.set_inheritable(False)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "matou.shim.forkserver", str(theirs.fileno()), "--",
                 *sys.argv], pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        except OSError as e:
            ours.close()
            raise SystemError_("fork server", "start", e.errno or 5) from e
        finally:
            theirs.close()
        self.sock, self.pid = ours, proc.pid
        return ours

    def warm(self) -> None:
        """Start the server unless it runs, so that a spawn soon after finds it ready."""
        with self.lock:
            if self.sock is None:
                self._launch()
            self.last_use = time.monotonic()

    def spawn(self, conf: dict[str, Any], fds: tuple[int, ...] = ()) -> int:
        """Fork a shim for ``conf`` (handing it ``fds``); returns its pid."""
        with self.lock:
            sock = self.sock or self._launch()
            self.last_use = time.monotonic()
            try:
                socket.send_fds(sock, [json.dumps(conf).encode()], list(fds))
                reply = sock.recv(4096)
            except OSError:
                reply = b""
            if not reply:  # the server died: the next spawn starts a new one
                self._stop()
                raise SystemError_("fork server", "spawn", 32)
        return int(json.loads(reply)["pid"])

    def stop_if_idle(self, idle: float = IDLE_STOP) -> bool:
        """Let the server go if it has not been used for ``idle`` seconds and nothing is
        being spawned right now; True if it was stopped."""
        if not self.lock.acquire(blocking=False):
            return False  # a spawn is under way
        try:
            if self.sock is None or time.monotonic() - self.last_use < idle:
                return False
            self._stop()
            return True
        finally:
            self.lock.release()

    def stop(self) -> None:
        with self.lock:
            self._stop()

    def _stop(self) -> None:
        # with self.lock held: the server exits when its socket closes
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


if __name__ == "__main__":
    _serve(socket.socket(fileno=int(sys.argv[1])))
