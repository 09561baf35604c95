"""`exec`: one more process in a live container's namespaces and cgroup.

    matou-runtime exec (parent): setns pid (and time) for its children, fork, setns back
      └─ child (in the container's pid ns): joins the cgroup → setns user → … → mnt →
         terminal → become the process (execve)

The parent learns that the exec happened when the channel closes (it is close-on-exec)
without an error message on it.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from typing import NamedTuple, NoReturn

from matou.cgroups import Manager
from matou.errors import FailedPrecondition, from_oserror
from matou.linux import libc, proc
from matou.linux import pty as ptys
from matou.oci import state as oci_state
from matou.oci.runtime_spec import Process, parse_spec
from matou.runtime.channel import Channel, ChildError
from matou.runtime.create import _fail, _kill, _reap, write_pid_file
from matou.runtime.process import Prepared, become, close_inherited, find_executable, prepare
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
    pid = _fork_in(here, lambda: _child(child, parent, prepared, there, console, keep,
                                         rec.cgroup()))
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


def _fork_in(joins: list[tuple[str, int]], child: Callable[[], NoReturn]) -> int:
    """Fork ``child`` with this process's namespaces for children set to ``joins`` for the
    moment of the fork."""
    back = []
    try:
        for kind, _ in joins:
            name = libc.NAMESPACE_PROC_NAMES[kind]
            back.append((kind, os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)))
        for kind, fd in joins:
            libc.setns(fd, libc.NAMESPACE_FLAGS[kind], kind)
        pid = os.fork()
        if pid == 0:
            child()
        return pid
    finally:
        for kind, fd in back:
            libc.setns(fd, libc.NAMESPACE_FLAGS[kind], kind)
            os.close(fd)


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
