"""The per-container shim: one small process that owns a container's stdio and PTY,
writes its json-file log, reaps it, and records how it ended — so that matoud can stop,
crash or upgrade without touching the container (live restore).

    <dir>/shim.sock    control socket: one JSON line per connection, then:
                         {"cmd":"start"} → {"pid":…} or {"error":…}: the container was
                           created at launch and runs only from here
                         {"cmd":"attach","stdin":…,"stdout":…,"stderr":…} → a stream
                           (raw with a TTY, else Docker's 8-byte multiplexed frames;
                           bytes from the client are the container's stdin)
                         {"cmd":"resize","h":…,"w":…}  {"cmd":"wait"} → {"exit":…}
                         {"cmd":"status"} → {"pid":…}
    <dir>/shim.json    {"pid": shim pid, "init": container pid}, written once started
    <dir>/exit.json    {"ExitCode", "FinishedAt", "Error"}, written atomically at the end

It is forked from the fork server (pre-imported, single-threaded) and uses matou.runtime
as a library: no interpreter starts on the way to a running container.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from matou.linux import jsonfile, libc, unixsock
from matou.linux import pty as ptys
from matou.oci import timestamps
from matou.shim import logfile

STDIN, STDOUT, STDERR = 0, 1, 2


def atomic_json(path: str, data: dict[str, Any]) -> None:
    jsonfile.write_atomic(path, data)


def _feed(fd: int, data: bytes) -> None:
    """Stdin bytes from a client to a process, if it still has a stdin; a process that
    closed it (EPIPE) just loses them, as with any pipe."""
    if fd >= 0:
        try:
            os.write(fd, data)
        except OSError:
            pass


class _Exec:
    """A process started in the container by `docker exec`, streamed to one client."""

    def __init__(self, client: _Client, tty: bool) -> None:
        self.client = client
        self.tty = tty
        self.pid = 0
        self.exit: int | None = None
        self.outputs: dict[int, int] = {}   # fd -> stream
        self.stdin_w = -1
        self.master = -1


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.mode = ""          # "", "attach", "wait"
        self.streams: set[int] = set()
        self.stdin = False
        self.eof = False  # the client shut its side: stop polling it


class Shim:
    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.dir = conf["dir"]
        self.tty = bool(conf.get("tty"))
        self.clients: list[_Client] = []
        self.exit_code: int | None = None
        self.init_pid = 0
        self.stdin_w = -1
        self.outputs: dict[int, int] = {}    # fd -> stream number
        self.master = -1
        self.execs: dict[str, _Exec] = {}
        self.exec_fds: dict[int, str] = {}   # output fd -> exec id
        self.exec_only = False               # the helper of one `docker exec`
        self.exec_record = ""                # …and where it records its process's exit
        self.exec_tried = False
        self.born = time.monotonic()
        self.listener: socket.socket

    # -- start ---------------------------------------------------------------------------

    def launch(self) -> None:
        from matou.runtime.create import Options, create
        from matou.runtime.foreground import console_pair
        from matou.runtime.store import Store

        store = Store(self.conf["runtime_root"])
        saved = [os.dup(fd) for fd in (0, 1, 2)]
        ours = theirs = None
        try:
            if self.tty:
                ours, theirs = console_pair()
                null = os.open("/dev/null", os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.close(null)
            else:
                if self.conf.get("open_stdin"):
                    r, w = os.pipe()
                    os.dup2(r, 0)
                    os.close(r)
                    self.stdin_w = w
                else:
                    null = os.open("/dev/null", os.O_RDONLY)
                    os.dup2(null, 0)
                    os.close(null)
                for fd, stream in ((1, STDOUT), (2, STDERR)):
                    r, w = os.pipe()
                    os.dup2(w, fd)
                    os.close(w)
                    self.outputs[r] = stream
            rec = create(store, Options(self.conf["id"], self.conf["bundle"],
                                        console_sock=theirs))
        finally:
            for fd, s in zip((0, 1, 2), saved, strict=True):
                os.dup2(s, fd)
                os.close(s)
        if ours is not None:
            assert theirs is not None
            theirs.close()
            self.master = ptys.recv_console(ours)
            ours.close()
            if self.conf.get("size"):
                h, w = self.conf["size"]
                ptys.set_size(self.master, h, w)
            self.outputs[self.master] = STDOUT
            self.stdin_w = self.master
        self.init_pid = rec.pid

    def start(self) -> None:
        """Let the created container run: the daemon says so once its attach streams are
        connected, so that not a byte of early output is missed."""
        from matou.runtime.start import start
        from matou.runtime.store import Store

        start(Store(self.conf["runtime_root"]), self.conf["id"])
        atomic_json(os.path.join(self.dir, "shim.json"),
                     {"pid": os.getpid(), "init": self.init_pid})

    # -- loop ------------------------------------------------------------------------------

    def _running(self) -> bool:
        if self.exec_only:  # an exec's helper: until its process ended and was streamed
            if not self.execs:  # nothing asked yet, or the start failed (answered)
                return not self.exec_tried and time.monotonic() < self.born + 30
            return any(ex.exit is None or ex.outputs for ex in self.execs.values())
        return bool(self.outputs) or self.exit_code is None

    def serve(self, listener: socket.socket, sigchld: int) -> None:
        self.listener = listener
        log: logfile.Writer | logfile.Discard = logfile.Writer(
            self.conf["log"], int(self.conf.get("max_size", 20_000_000)),
            int(self.conf.get("max_file", 5))) if self.conf.get("log") else logfile.Discard()
        try:
            while self._running():
                fds = [listener.fileno(), sigchld, *self.outputs, *self.exec_fds,
                       *(c.sock.fileno() for c in self.clients if not c.eof)]
                try:
                    ready, _, _ = select.select(fds, [], [], 1.0)
                except InterruptedError:
                    continue
                for fd in ready:
                    if fd == listener.fileno():
                        conn, _ = listener.accept()
                        conn.setblocking(True)
                        self.clients.append(_Client(conn))
                    elif fd == sigchld:
                        os.read(sigchld, 4096)
                        self._reap()
                    elif fd in self.outputs:
                        self._output(fd, log)
                    elif fd in self.exec_fds:
                        self._guarded(self._exec_output, fd)
                    else:
                        c = next((c for c in self.clients if c.sock.fileno() == fd), None)
                        if c is not None:  # None: dropped earlier in this round
                            self._guarded(self._from_client, c)
                if self.exit_code is not None and not self.outputs and not self.exec_only:
                    break
                if self.exit_code is not None and self.master >= 0:
                    # a pty's master never sees EOF while a reader might reopen the slave
                    self._drain(log)
        finally:
            log.close()

    def _guarded(self, handler: Callable[[Any], None], arg: Any) -> None:
        # a client's or an exec's trouble must never take the container down with the shim
        try:
            handler(arg)
        except Exception:
            import traceback  # only then: it drags in linecache and tokenize

            traceback.print_exc()

    def _drain(self, log: logfile.Writer | logfile.Discard) -> None:
        # the container's pty after its exit: read until quiet (see _exec_maybe_done)
        for fd in list(self.outputs):
            os.set_blocking(fd, False)
            while fd in self.outputs and select.select([fd], [], [], 0.05)[0]:
                try:
                    self._output(fd, log)
                except BlockingIOError:
                    break
            if fd in self.outputs:
                del self.outputs[fd]

    def _output(self, fd: int, log: logfile.Writer | logfile.Discard) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                raise BlockingIOError from e
            data = b""  # EIO: the pty's last slave closed
        stream = self.outputs[fd]
        if not data:
            del self.outputs[fd]
            if fd != self.master:
                os.close(fd)
            return
        log.write("stdout" if stream == STDOUT else "stderr", data)
        for c in list(self.clients):
            if c.mode == "attach" and stream in c.streams:
                frame = data if self.tty else struct.pack(">BxxxI", stream, len(data)) + data
                try:
                    c.sock.sendall(frame)
                except OSError:
                    self._drop(c)

    def _from_client(self, c: _Client) -> None:
        try:
            data = c.sock.recv(65536)
        except OSError:
            data = b""
        if c.mode == "exec":
            ex = next((x for x in self.execs.values() if x.client is c), None)
            if ex is None or not data:
                if ex is not None and ex.stdin_w >= 0 and not ex.tty:
                    os.close(ex.stdin_w)
                    ex.stdin_w = -1
                if not data:
                    c.eof = True
                    if ex is None:
                        self._drop(c)
                return
            if c.stdin:
                _feed(ex.stdin_w, data)
            return
        if c.mode == "attach":
            if not data:
                if c.stdin and self.conf.get("stdin_once") and self.stdin_w >= 0 and \
                        not self.tty:
                    os.close(self.stdin_w)
                    self.stdin_w = -1
                # a half-close (stdin done): the output still goes to this client, which
                # is dropped when a send fails or the container ends
                c.eof = True
                return
            if c.stdin:
                _feed(self.stdin_w, data)
            return
        if not data:
            self._drop(c)
            return
        c.buf += data
        if b"\n" not in c.buf:
            return
        line, _, rest = c.buf.partition(b"\n")
        try:
            req = json.loads(line)
        except ValueError:
            self._drop(c)
            return
        self._command(c, req, rest)

    def _command(self, c: _Client, req: dict[str, Any], rest: bytes) -> None:
        cmd = req.get("cmd")
        if cmd == "attach":
            c.mode = "attach"
            c.stdin = bool(req.get("stdin"))
            c.streams = {s for s, on in ((STDOUT, req.get("stdout")), (STDERR, req.get("stderr")))
                         if on}
            if self.tty and c.streams:
                c.streams = {STDOUT}
            c.sock.sendall(b"{}\n")
            if rest and c.stdin and self.stdin_w >= 0:
                os.write(self.stdin_w, rest)
            if self.exit_code is not None and not self.outputs:
                self._drop(c)
        elif cmd == "resize":
            if self.master >= 0:
                ptys.set_size(self.master, int(req.get("h", 24)), int(req.get("w", 80)))
            c.sock.sendall(b"{}\n")
            self._drop(c)
        elif cmd == "wait":
            c.mode = "wait"
            if self.exit_code is not None and not self.outputs:
                self._answer_wait(c)
        elif cmd == "start":
            try:
                self.start()
                reply: dict[str, Any] = {"pid": self.init_pid}
            except Exception as e:
                reply = {"error": str(e)}
            c.sock.sendall(json.dumps(reply).encode() + b"\n")
            self._drop(c)
            if "pid" in reply:
                self._hand_over()
        elif cmd == "exec":
            self._exec(c, req, rest)
        elif cmd == "exec-status":
            ex = self.execs.get(str(req.get("id")))
            reply = {"pid": ex.pid, "exit": ex.exit} if ex else {"error": "no such exec"}
            c.sock.sendall(json.dumps(reply).encode() + b"\n")
            self._drop(c)
        elif cmd == "exec-resize":
            ex = self.execs.get(str(req.get("id")))
            if ex is not None and ex.master >= 0:
                ptys.set_size(ex.master, int(req.get("h", 24)), int(req.get("w", 80)))
            c.sock.sendall(b"{}\n")
            self._drop(c)
        elif cmd == "status":
            c.sock.sendall(json.dumps({"pid": self.init_pid, "exit": self.exit_code}).encode()
                           + b"\n")
            self._drop(c)
        elif cmd == "close-stdin":
            if self.stdin_w >= 0 and not self.tty:
                os.close(self.stdin_w)
                self.stdin_w = -1
            c.sock.sendall(b"{}\n")
            self._drop(c)
        else:
            self._drop(c)

    def _hand_over(self) -> None:
        """Become matou-supervise (same process, same children, same fds): the running
        container's resident supervisor is then ~1 MiB of C, not an interpreter. Without
        the binary (or if the exec fails) this process goes on serving."""
        native = supervisor()
        if native is None or self.exec_only or self.execs or self.exit_code is not None:
            return
        passed = [self.listener.fileno(), *self.outputs]
        if self.stdin_w >= 0:
            passed.append(self.stdin_w)
        clients = []
        for c in self.clients:
            if c.mode == "attach":
                mask = (1 if STDOUT in c.streams else 0) | (2 if STDERR in c.streams else 0)
                clients.append(f"{c.sock.fileno()}:{mask}:{int(c.stdin)}")
            elif c.mode == "wait":
                clients.append(f"{c.sock.fileno()}:-1:0")
            else:
                continue
            passed.append(c.sock.fileno())
        for fd in passed:
            os.set_inheritable(fd, True)
        outs = ",".join(f"{fd}:{stream}" for fd, stream in self.outputs.items())
        try:
            os.execv(native, [native, self.dir, str(self.init_pid), str(int(self.tty)),
                              str(int(bool(self.conf.get("stdin_once")))),
                              self.conf.get("log") or "-",
                              str(int(self.conf.get("max_size", 20_000_000))),
                              str(int(self.conf.get("max_file", 5))),
                              str(self.listener.fileno()), str(self.stdin_w), outs, *clients])
        except OSError:
            for fd in passed:
                os.set_inheritable(fd, False)

    def _exec(self, c: _Client, req: dict[str, Any], rest: bytes) -> None:
        from matou.oci.runtime_spec import parse_process
        from matou.runtime.exec import ExecOptions, exec_process
        from matou.runtime.foreground import console_pair
        from matou.runtime.store import Store

        self.exec_tried = True
        ex = _Exec(c, bool(req.get("tty")))
        saved = [os.dup(fd) for fd in (0, 1, 2)]
        ours = theirs = None
        opened: list[int] = []
        try:
            process = parse_process(req["process"])
            if ex.tty:
                ours, theirs = console_pair()
            else:
                r, w = os.pipe()
                os.dup2(r, 0)
                opened.append(r)
                ex.stdin_w = w
                for fd, stream in ((1, STDOUT), (2, STDERR)):
                    r, w = os.pipe()
                    os.dup2(w, fd)
                    os.close(w)
                    ex.outputs[r] = stream
            ex.pid = exec_process(Store(self.conf["runtime_root"]), ExecOptions(
                self.conf["id"], process, console_sock=theirs))
        except Exception as e:
            for fd in (*ex.outputs, ex.stdin_w):
                if fd >= 0:
                    os.close(fd)
            c.sock.sendall(json.dumps({"error": str(e)}).encode() + b"\n")
            self._drop(c)
            return
        finally:
            for fd, s in zip((0, 1, 2), saved, strict=True):
                os.dup2(s, fd)
                os.close(s)
            for fd in opened:
                os.close(fd)
        if ours is not None:
            assert theirs is not None
            theirs.close()
            ex.master = ptys.recv_console(ours)
            ours.close()
            ex.outputs[ex.master] = STDOUT
            ex.stdin_w = ex.master
        exec_id = str(req.get("id"))
        self.execs[exec_id] = ex
        for fd in ex.outputs:
            self.exec_fds[fd] = exec_id
        c.mode = "exec"
        c.stdin = bool(req.get("stdin"))
        c.sock.sendall(json.dumps({"pid": ex.pid}).encode() + b"\n")
        if rest and c.stdin and ex.stdin_w >= 0:
            os.write(ex.stdin_w, rest)
        if not c.stdin and ex.stdin_w >= 0 and not ex.tty:
            os.close(ex.stdin_w)
            ex.stdin_w = -1

    def _exec_output(self, fd: int) -> None:
        ex = self.execs[self.exec_fds[fd]]
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            del self.exec_fds[fd]
            del ex.outputs[fd]
            if fd != ex.master:
                os.close(fd)
            self._exec_maybe_done(ex)
            return
        frame = data if ex.tty else struct.pack(">BxxxI", ex.outputs[fd], len(data)) + data
        try:
            ex.client.sock.sendall(frame)
        except OSError:
            pass

    def _exec_maybe_done(self, ex: _Exec) -> None:
        if ex.exit is None:
            return
        if ex.master >= 0 and ex.master in ex.outputs:
            # the pty: what the process wrote last may still be on its way through the
            # line discipline (the kernel flips tty buffers asynchronously): read until
            # the master stays quiet for a moment, then let go of it
            while True:
                ready, _, _ = select.select([ex.master], [], [], 0.05)
                if not ready:
                    break
                try:
                    data = os.read(ex.master, 65536)
                except OSError:
                    break
                if not data:
                    break
                try:
                    ex.client.sock.sendall(data)
                except OSError:
                    break
            del ex.outputs[ex.master]
            self.exec_fds.pop(ex.master, None)
            if ex.stdin_w == ex.master:  # the same fd: closing it twice could close a
                ex.stdin_w = -1          # client socket that reused the number
            os.close(ex.master)
            ex.master = -1
        if ex.outputs:
            return
        if ex.stdin_w >= 0:
            os.close(ex.stdin_w)
            ex.stdin_w = -1
        if self.exec_record:  # before the stream ends: a client's inspect comes next
            atomic_json(self.exec_record, {"exit": ex.exit})
            self.exec_record = ""
        self._drop(ex.client)

    def _answer_wait(self, c: _Client) -> None:
        try:
            c.sock.sendall(json.dumps({"exit": self.exit_code}).encode() + b"\n")
        except OSError:
            pass
        self._drop(c)

    def _drop(self, c: _Client) -> None:
        if c in self.clients:
            self.clients.remove(c)
        try:
            c.sock.close()
        except OSError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for ex in self.execs.values():
                if ex.pid == pid:
                    ex.exit = (128 + os.WTERMSIG(status) if os.WIFSIGNALED(status)
                               else os.WEXITSTATUS(status))
                    self._exec_maybe_done(ex)
            if pid == self.init_pid:
                self.exit_code = (128 + os.WTERMSIG(status) if os.WIFSIGNALED(status)
                                  else os.WEXITSTATUS(status))

    def finish(self, error: str = "") -> None:
        code = self.exit_code if self.exit_code is not None else (127 if error else 255)
        atomic_json(os.path.join(self.dir, "exit.json"),
                     {"ExitCode": code, "FinishedAt": timestamps.format(), "Error": error})
        for c in list(self.clients):
            if c.mode == "wait":
                self._answer_wait(c)
            else:
                self._drop(c)
        try:
            from matou.runtime.delete import delete
            from matou.runtime.store import Store

            delete(Store(self.conf["runtime_root"]), self.conf["id"], force=True)
        except Exception:
            pass


def supervisor() -> str | None:
    """The native supervisor next to this interpreter (installed by install.sh), if any."""
    path = os.environ.get("MATOU_SUPERVISE") or os.path.join(
        os.path.dirname(sys.executable), "matou-supervise")
    return path if path != "none" and os.access(path, os.X_OK) else None


def _become(path: str, listener: socket.socket | None = None) -> tuple[socket.socket, int]:
    """A session leader and child subreaper that ignores the daemon's signals, listening
    on ``path`` (or on ``listener``, made by the daemon); returns the listener and the read
    end of the SIGCHLD wake-up pipe."""
    os.setsid()
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the daemon's death is not ours
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    if listener is not None:
        return listener, r
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    unixsock.bind(listener, path)
    os.chmod(path, 0o600)
    listener.listen(16)
    return listener, r


def exec_paths(rundir: str, exec_id: str) -> tuple[str, str]:
    """An exec helper's control socket and the record of its process's exit."""
    return (os.path.join(rundir, f"exec-{exec_id[:16]}.sock"),
            os.path.join(rundir, f"exec-{exec_id[:16]}.json"))


def run_exec(conf: dict[str, Any]) -> NoReturn:
    """The helper of one `docker exec` (in a freshly forked process): it starts the
    process in the container when asked on its socket (already listening: the daemon
    made it and passed it, so it can connect at once), streams it, reaps it, records its
    exit code and ends. The container's own supervisor is not involved."""
    code = 0
    shim = Shim({**conf, "log": ""})
    shim.exec_only = True
    sock, shim.exec_record = exec_paths(conf["dir"], conf["exec_id"])
    try:
        given = conf.get("fds") or []
        listener, r = _become(sock, socket.socket(fileno=given[0]) if given else None)
        shim.serve(listener, r)  # the exit is recorded as the stream ends (_exec_maybe_done);
        # an exec that never started has none: the daemon answered its start with the error
    except BaseException:
        code = 1
    try:
        os.unlink(sock)
    except OSError:
        pass
    os._exit(code)


def run(conf: dict[str, Any]) -> NoReturn:
    """The shim's main (in a freshly forked, session-leading process)."""
    code = 0
    shim = Shim(conf)
    try:
        listener, r = _become(os.path.join(conf["dir"], "shim.sock"))
        try:
            shim.launch()
        except Exception as e:
            shim.finish(str(e))
            os._exit(1)
        shim.serve(listener, r)
        shim.finish()
    except BaseException as e:  # never let an exception unwind into the fork server
        try:
            shim.finish(f"shim: {type(e).__name__}: {e}")
        except BaseException:
            pass
        code = 1
    os._exit(code)

