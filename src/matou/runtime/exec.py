"""`exec`: one more process in a live container's namespaces and cgroup.

    matou-runtime exec (parent): setns pid (and time) for its children, fork, setns back
      └─ child (in the container's pid ns): joins the cgroup → setns user → … → mnt →
         terminal → become the process (execve)

Where it can, the parent spawns matou-exec (native/exec.c) instead of forking: the same
steps in C, without an interpreter running in a freshly forked process (each page it
writes is copied). Not for a terminal, preserved fds or user and time namespaces.

The parent learns that the exec happened when the channel closes (it is close-on-exec)
without an error message on it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple, NoReturn

from matou.cgroups import Manager
from matou.errors import FailedPrecondition, from_oserror
from matou.linux import libc, proc
from matou.linux import pty as ptys
from matou.oci import state as oci_state
from matou.oci.runtime_spec import Process, parse_spec
from matou.runtime.channel import Channel, ChildError
from matou.runtime.create import _fail, _kill, _reap, write_pid_file
from matou.runtime.process import (
    Prepared,
    become,
    close_inherited,
    env_path,
    find_executable,
    prepare,
)
from matou.runtime.process import seal_imports as _seal
from matou.runtime.store import Store

# user first (it grants the rights to join the rest), mnt last (it changes our root)
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")
_FOR_CHILDREN = ("pid", "time")  # setns(2) moves the caller's children, not the caller


class ExecOptions(NamedTuple):
    container_id: str
    process: Process
    pid_file: str = ""
    console_socket: str = ""
    preserve_fds: int = 0
    console_sock: socket.socket | None = None


def exec_process(store: Store, opts: ExecOptions) -> int:
    """Start the process; returns its host pid (the caller waits for it or not)."""
    rec = store.load(opts.container_id)
    status = store.status(rec)
    if status not in (oci_state.CREATED, oci_state.RUNNING):
        raise FailedPrecondition(f"cannot exec in a container in the {status} state")
    spec = parse_spec(rec.config)
    prepared = prepare(opts.process, spec, opts.preserve_fds, store.seccomp_cache)
    joins: list[tuple[str, int]] = []
    for kind in _JOIN_ORDER:
        name = libc.NAMESPACE_PROC_NAMES[kind]
        theirs = proc.ns_inode(rec.pid, name)
        if theirs is None or theirs == proc.ns_inode("self", name):
            continue
        try:
            joins.append((kind, os.open(f"/proc/{rec.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)))
        except OSError as e:
            raise from_oserror("open namespace", f"/proc/{rec.pid}/ns/{name}", e) from e
    if not proc.is_alive(rec.pid, rec.pid_start):
        raise FailedPrecondition("container not running")
    console = opts.console_sock
    if opts.console_socket:
        console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            console.connect(opts.console_socket)
        except OSError as e:
            raise from_oserror("connect console socket", opts.console_socket, e) from e
    if opts.process.terminal and console is None:
        raise FailedPrecondition("cannot allocate tty without setting console socket")
    parent, child = Channel.pair()
    # pid and time namespaces are entered for the children to come: joined here, around
    # the fork (and left again after it), so one child, already in them, does the rest
    here = [(kind, fd) for kind, fd in joins if kind in _FOR_CHILDREN]
    there = [(kind, fd) for kind, fd in joins if kind not in _FOR_CHILDREN]
    keep = {child.fileno(), *(fd for _, fd in there)}
    if console is not None:
        keep.add(console.fileno())
    native = None if (opts.process.terminal or opts.preserve_fds or any(
        kind in ("user", "time") for kind, _ in joins)) else native_exec()
    if native is not None:
        pid = _spawn_native(native, child, prepared, here, there, rec.cgroup())
    else:
        with _children_in(here):
            pid = os.fork()
            if pid == 0:
                _child(child, parent, prepared, there, console, keep, rec.cgroup())
    child.close()
    for _, fd in joins:
        os.close(fd)
    if console is not None and opts.console_socket:
        console.close()
    try:
        try:
            msg = parent.sock.recv(65536)  # nothing, once the exec closed its end
        except ConnectionResetError:
            msg = b""
        if msg:
            raise ChildError(str(json.loads(msg).get("message")))
    except BaseException as e:
        parent.close()
        _kill(pid)
        _reap(pid)
        if isinstance(e, ChildError):
            raise FailedPrecondition(str(e)) from None
        raise
    finally:
        parent.close()
    if opts.pid_file:
        write_pid_file(opts.pid_file, pid)
    return pid


@contextmanager
def _children_in(joins: list[tuple[str, int]]) -> Iterator[None]:
    """This process's namespaces for children set to ``joins`` (pid, time) for the block."""
    back = []
    try:
        for kind, _ in joins:
            name = libc.NAMESPACE_PROC_NAMES[kind]
            back.append((kind, os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)))
        for kind, fd in joins:
            libc.setns(fd, libc.NAMESPACE_FLAGS[kind], kind)
        yield
    finally:
        for kind, fd in back:
            libc.setns(fd, libc.NAMESPACE_FLAGS[kind], kind)
            os.close(fd)


_native: list[int] = []  # the sealed copy of matou-exec, once made (an fd)


def native_exec() -> int | None:
    """An fd of a sealed in-memory copy of matou-exec (next to this interpreter, built by
    install.sh; MATOU_EXEC names another or "none"), or None without one. A process in
    the container that reaches /proc/PID/exe of it finds the copy, which cannot be
    written (CVE-2019-5736); the fork server makes it once for every helper."""
    if _native:
        return _native[0]
    path = os.environ.get("MATOU_EXEC") or os.path.join(os.path.dirname(sys.executable),
                                                        "matou-exec")
    if path == "none" or not os.access(path, os.X_OK):
        return None
    with open(path, "rb") as f:
        code = f.read()
    fd = os.memfd_create("matou-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, code)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    _native.append(fd)
    return fd


def _spawn_native(exe: int, ch: Channel, prepared: Prepared, here: list[tuple[str, int]],
                  there: list[tuple[str, int]], cgroup: Manager) -> int:
    """matou-exec, spawned in the container's pid namespace, does what _child does."""
    p = prepared.process
    c = prepared.caps
    user = p.user
    bpf = prepared.seccomp
    cgroup_files = cgroup.join_files()
    fields: list[object] = [
        1, ch.fileno(), 0, len(cgroup_files), *cgroup_files,
        len(there), *(x for kind, fd in there for x in (fd, libc.NAMESPACE_FLAGS[kind])),
        p.cwd, p.args[0], env_path(p.env), len(p.args), *p.args, len(p.env), *p.env,
        len(prepared.rlimits), *(x for limit in prepared.rlimits for x in limit),
        int(c is not None), *((c.bounding, c.effective, c.permitted, c.inheritable, c.ambient)
                              if c is not None else (0, 0, 0, 0, 0)),
        user.uid, user.gid, len(user.additional_gids), *user.additional_gids,
        -1 if user.umask is None else user.umask, int(p.no_new_privileges),
        bpf.flags if bpf is not None else 0, bpf.bpf.hex() if bpf is not None else ""]
    blob = os.memfd_create("matou-exec-blob", os.MFD_CLOEXEC)
    passed = [ch.fileno(), *(fd for _, fd in there), blob]
    try:
        os.write(blob, b"".join(str(x).encode() + b"\0" for x in fields))
        for fd in passed:
            os.set_inheritable(fd, True)
        with _children_in(here):
            return os.posix_spawn(f"/proc/self/fd/{exe}", ["matou-exec", str(blob)], {})
    finally:
        for fd in passed[:-1]:
            os.set_inheritable(fd, False)
        os.close(blob)


def _child(ch: Channel, other: Channel, prepared: Prepared, joins: list[tuple[str, int]],
           console: socket.socket | None, keep: set[int], cgroup: Manager) -> NoReturn:
    try:
        other.close()
        libc.prctl(libc.PR_SET_DUMPABLE, 0)  # CVE-2019-5736, see create
        _seal()
        close_inherited(keep, prepared.preserve_fds)
        cgroup.join_self()
        for kind, fd in joins:
            libc.setns(fd, libc.NAMESPACE_FLAGS[kind], kind)
            os.close(fd)
        if any(kind == "user" for kind, _ in joins):
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        p = prepared.process
        if p.terminal:
            assert console is not None
            master, slave, name = ptys.open_pty("/dev/ptmx")
            if p.console_size is not None:
                ptys.set_size(slave, p.console_size.height, p.console_size.width)
            ptys.send_console(console, master, name)
            os.close(master)
            console.close()
            ptys.make_controlling(slave)
            os.close(slave)
        exe = find_executable(p.args[0], p.env, p.cwd)
        become(prepared, exe)
    except BaseException as e:
        _fail(ch, e)
