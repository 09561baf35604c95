"""`create`: from an OCI bundle to a container process waiting to be started.

    matou-runtime create (parent, host namespaces)
      │  fork
      └─ stage 1 (host pid ns): join namespaces by path → new user ns (parent writes the
         │  id maps) → joins the cgroup (parent writes it) → unshare the other new
         │  namespaces → fork, report the child's host pid, exit
         └─ stage 2 = container pid 1: lo up → [prestart, createRuntime hooks, by the
            parent] → rootfs → [createContainer hooks] → pivot_root → terminal → report
            "created" → wait on init.sock for `start` → [startContainer hooks] →
            become the user process (execve)

Stage 2 stays the container's init: no helper process lingers. The parent exits once it
has written the state and the pid file, leaving stage 2 to whoever reaps orphans (the
containerd shim is a subreaper; `run` makes itself one).
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
from typing import Any, NamedTuple, NoReturn

from matou.cgroups import Manager
from matou.errors import (
    FailedPrecondition,
    InvalidArgument,
    MatouError,
    SystemError_,
    from_oserror,
)
from matou.linux import libc, netdev, proc, unixsock
from matou.linux import pty as ptys
from matou.linux.mount import secure_join
from matou.oci import state as oci_state
from matou.oci.runtime_spec import Spec, load_spec_bytes
from matou.oci.timestamps import format as timestamp
from matou.runtime import rootfs
from matou.runtime.channel import Channel, ChildError
from matou.runtime.process import Prepared, become, close_inherited, find_executable, prepare
from matou.runtime.process import seal_imports as _seal
from matou.runtime.store import Record, Store


class Options(NamedTuple):
    container_id: str
    bundle: str
    pid_file: str = ""
    console_socket: str = ""
    no_pivot: bool = False
    preserve_fds: int = 0
    systemd_cgroup: bool = False
    console_sock: socket.socket | None = None  # `run -t` passes its own socket end


def load_bundle(bundle: str) -> Spec:
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            return load_spec_bytes(f.read())
    except FileNotFoundError as e:
        raise InvalidArgument(f"bundle `{bundle}`: no config.json") from e
    except OSError as e:
        raise from_oserror("read", path, e) from e


def write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def create(store: Store, opts: Options) -> Record:
    bundle = os.path.realpath(opts.bundle)
    spec = load_bundle(bundle)
    if spec.root is None:
        raise InvalidArgument("config.json: root: missing")
    root = os.path.realpath(os.path.join(bundle, spec.root.path))
    if not os.path.isdir(root):
        raise InvalidArgument(f"root `{root}`: not a directory")
    terminal = spec.process is not None and spec.process.terminal
    if terminal and not (opts.console_socket or opts.console_sock):
        raise InvalidArgument("cannot allocate tty without setting console socket")
    if not terminal and opts.console_socket:
        raise InvalidArgument("console socket given but process.terminal is false")
    user_ns = spec.namespace("user")
    if user_ns is not None and not user_ns.path and not (spec.uid_mappings and spec.gid_mappings):
        raise InvalidArgument("linux.uidMappings/gidMappings: required with a new user namespace")
    host_ns = {kind: spec.namespace(kind) is None for kind in ("ipc", "network", "uts")}
    rootfs.check_sysctl(spec, host_ns)
    if spec.namespace("mount") is None and spec.root.readonly:
        raise InvalidArgument("root.readonly: needs a mount namespace of the container's own")
    if spec.personality and spec.personality not in _PERSONALITIES:
        raise InvalidArgument(f"linux.personality.domain: unknown {spec.personality!r}")
    # no process is allowed until `start`, which then fails (runtime spec, "start")
    prepared = prepare(spec.process, spec, opts.preserve_fds, store.seccomp_cache) \
        if spec.process else None
    cgroup = Manager.for_spec(spec.cgroups_path, opts.container_id, opts.systemd_cgroup)

    store.reserve(opts.container_id)
    try:
        return _launch(store, opts, spec, bundle, root, prepared, cgroup)
    except BaseException:
        store.remove(opts.container_id)
        raise


def _join_fds(spec: Spec) -> list[tuple[str, int]]:
    """Open the namespaces to join now, in the runtime's view, user namespace first."""
    out = []
    for ns in sorted(spec.namespaces, key=lambda n: n.type != "user"):
        if not ns.path:
            continue
        try:
            fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise from_oserror("open namespace", ns.path, e) from e
        try:
            kind = libc.ns_type(fd, ns.path)
        except SystemError_:
            kind = 0  # ENOTTY: not a namespace at all
        if kind != libc.NAMESPACE_FLAGS[ns.type]:
            link = os.readlink(f"/proc/self/fd/{fd}") if kind == 0 else hex(kind)
            os.close(fd)
            raise InvalidArgument(f"namespace path `{ns.path}` is {link}, not a {ns.type} ns")
        out.append((ns.type, fd))
    return out


def _launch(store: Store, opts: Options, spec: Spec, bundle: str, root: str,
            prepared: Prepared | None, cgroup: Manager) -> Record:
    cid = opts.container_id
    joins = _join_fds(spec)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unixsock.bind(listener, store.init_socket(cid))
    listener.listen(1)
    console: socket.socket | None = opts.console_sock
    if opts.console_socket:
        console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            console.connect(opts.console_socket)
        except OSError as e:
            raise from_oserror("connect console socket", opts.console_socket, e) from e
    if any(spec.hooks):
        # the children run hooks too, and may not import anything once forked
        from matou.runtime import hooks
    parent, child = Channel.pair()
    cgroup_ns = spec.namespace("cgroup")
    user_ns = spec.namespace("user")
    ctx = rootfs.Context(
        spec=spec, rootfs=root, bundle=bundle, cgroup=cgroup,
        new_cgroupns=cgroup_ns is not None and not cgroup_ns.path,
        in_userns=user_ns is not None, own_mount_ns=spec.namespace("mount") is not None,
    )
    keep = {child.fileno(), listener.fileno(), *(fd for _, fd in joins)}
    if console is not None:
        keep.add(console.fileno())
    pid1 = os.fork()
    if pid1 == 0:
        parent.close()
        _stage1(child, ctx, prepared, opts, joins, listener, console, keep)
    child.close()
    listener.close()
    for _, fd in joins:
        os.close(fd)
    if console is not None and opts.console_socket:
        console.close()
    init_pid = 0
    try:
        parent.expect("cgroup")
        cgroup.create()
        cgroup.set(_with_device_allows(spec))
        parent.send("ok")
        parent.expect("joined")
        if user_ns is not None and not user_ns.path:
            parent.expect("userns")
            _write_id_maps(pid1, spec)
            parent.send("ok")
        init_pid = int(parent.expect("pid")["pid"])
        _reap(pid1)
        parent.send("go")
        started = proc.start_time(init_pid)
        rec = Record(
            id=cid, pid=init_pid, pid_start=started, bundle=bundle, rootfs=root,
            created=timestamp(), owner=_owner(), cgroup_path=cgroup.path,
            cgroup_relative=cgroup.relative, config=spec.raw,
            annotations=spec.annotations,
        )
        parent.expect("namespaces")
        if spec.hooks.prestart or spec.hooks.create_runtime:
            from matou.runtime import hooks

            # runtime-tools expects `created` in the (deprecated) prestart hooks' state
            hooks.run(spec.hooks.prestart, store.oci_state(rec, oci_state.CREATED), "prestart")
            hooks.run(spec.hooks.create_runtime, store.oci_state(rec, oci_state.CREATING),
                      "createRuntime")
        parent.send("ok")
        parent.expect("created")
        store.save(rec)
        if opts.pid_file:
            write_pid_file(opts.pid_file, init_pid)
        return rec
    except BaseException as e:
        # close first: a child blocked on the channel must see EOF, not wait forever
        parent.close()
        if init_pid:
            _kill(init_pid)
        _kill(pid1)
        _reap(pid1)
        try:
            cgroup.destroy()
        except MatouError:
            pass
        if spec.namespace("mount") is None:
            rootfs.unmount_under(root)  # they were made in the host's namespace
        if isinstance(e, ChildError):
            raise FailedPrecondition(str(e)) from None
        raise
    finally:
        parent.close()


def _with_device_allows(spec: Spec) -> dict[str, Any]:
    """The spec's resources plus, after its device rules, the allows for the devices the
    runtime itself creates (as runc adds them): default nodes, spec devices, ptys."""
    res = dict(spec.resources)
    if not res.get("devices"):
        return res
    def allow(kind: str, major: int | None, minor: int | None,
              access: str = "rwm") -> dict[str, Any]:
        return {"allow": True, "type": kind, "major": major, "minor": minor, "access": access}
    extra = [allow("c", None, None, "m"), allow("b", None, None, "m")]
    extra += [allow(d.type, d.major, d.minor) for d in rootfs.DEFAULT_DEVICES]
    extra += [allow("c", 136, None), allow("c", 5, 2), allow("c", 5, 1)]
    extra += [allow("c" if d.type == "u" else d.type, d.major, d.minor)
              for d in spec.devices if d.type in ("b", "c", "u")]
    res["devices"] = [*res["devices"], *extra]
    return res


_PERSONALITIES = {"LINUX": 0x0000, "LINUX32": 0x0008}  # linux/personality.h PER_*


def _owner() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _write_id_maps(pid: int, spec: Spec) -> None:
    for name, maps in (("uid_map", spec.uid_mappings), ("gid_map", spec.gid_mappings)):
        text = "".join(f"{x.container_id} {x.host_id} {x.size}\n" for x in maps)
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)
        except OSError as e:
            raise from_oserror("write", f"/proc/{pid}/{name}", e) from e


def _fail(ch: Channel, e: BaseException) -> NoReturn:
    msg = str(e) if isinstance(e, MatouError) else f"{type(e).__name__}: {e}"
    try:
        ch.send("error", message=msg)
    except OSError:
        pass
    os._exit(1)


def _stage1(ch: Channel, ctx: rootfs.Context, prepared: Prepared | None, opts: Options,
            joins: list[tuple[str, int]], listener: socket.socket,
            console: socket.socket | None, keep: set[int]) -> NoReturn:
    try:
        # never let the container ptrace us or open /proc/PID/exe of the interpreter
        # while we are in its namespaces (CVE-2019-5736); execve resets this
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        _seal()
        close_inherited(keep, opts.preserve_fds)
        spec = ctx.spec
        # join the cgroup while still the host's root: from a user namespace the
        # cgroup files are no longer ours to write
        ch.send("cgroup")
        ch.expect("ok")
        ctx.cgroup.join_self()
        ch.send("joined")
        for kind, fd in joins:
            libc.setns(fd, libc.NAMESPACE_FLAGS[kind], kind)
            os.close(fd)
        user = spec.namespace("user")
        if user is not None and not user.path:
            libc.unshare(libc.CLONE_NEWUSER)
            ch.send("userns")
            ch.expect("ok")
        if user is not None:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        flags = 0
        for ns in spec.namespaces:
            if not ns.path and ns.type != "user":
                flags |= libc.NAMESPACE_FLAGS[ns.type]
        if flags:
            libc.unshare(flags)
        pid = os.fork()
        if pid == 0:
            _stage2(ch, ctx, prepared, opts, listener, console)
        ch.send("pid", pid=pid)
        os._exit(0)
    except BaseException as e:
        _fail(ch, e)


def _stage2(ch: Channel, ctx: rootfs.Context, prepared: Prepared | None, opts: Options,
            listener: socket.socket, console: socket.socket | None) -> NoReturn:
    spec = ctx.spec
    proc_spec = spec.process
    try:
        ch.expect("go")  # the parent has our pid: from here on we own the channel
        net = spec.namespace("network")
        if net is not None and not net.path:
            netdev.link_up("lo")
        ch.send("namespaces")
        ch.expect("ok")
        ctx.devnull = rootfs.open_host_devnull()
        if proc_spec is not None and proc_spec.oom_score_adj is not None:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(proc_spec.oom_score_adj))
        rootfs.prepare_root(ctx)
        if spec.hooks.create_container:
            from matou.runtime import hooks  # imported before the fork: see _launch

            state = oci_state.State(opts.container_id, oci_state.CREATING,
                                    os.getpid(), ctx.bundle, spec.annotations)
            hooks.run(spec.hooks.create_container, state, "createContainer")
        if spec.hostname:
            socket.sethostname(spec.hostname)
        if spec.domainname:
            libc.setdomainname(spec.domainname)
        rootfs.write_sysctls(spec)
        if spec.personality:
            libc.personality(_PERSONALITIES[spec.personality])
        rootfs.mask_and_protect(ctx)
        slave = -1
        terminal = proc_spec is not None and proc_spec.terminal
        if proc_spec is not None and terminal:
            ptmx = secure_join(ctx.rootfs, "/dev/ptmx")
            master, slave, name = ptys.open_pty(ptmx if os.path.exists(ptmx) else "/dev/ptmx")
            if proc_spec.console_size is not None:
                ptys.set_size(slave, proc_spec.console_size.height, proc_spec.console_size.width)
            rootfs.bind_console(ctx, slave)
        rootfs.enter(ctx, opts.no_pivot)
        os.close(ctx.devnull)
        exe = _find_in_container(prepared) if prepared is not None else ""
        if terminal:
            assert console is not None
            ptys.send_console(console, master, name)
            os.close(master)
            console.close()
            ptys.make_controlling(slave)
            os.close(slave)
        ch.send("created")
        ch.close()
    except BaseException as e:
        _fail(ch, e)
    _wait_for_start(listener, ctx, prepared, exe, opts.container_id)


def _find_in_container(prepared: Prepared) -> str:
    p = prepared.process
    try:
        return find_executable(p.args[0], p.env, p.cwd)
    except InvalidArgument:
        raise
    except OSError as e:
        raise from_oserror("exec", p.args[0], e) from e


def _wait_for_start(listener: socket.socket, ctx: rootfs.Context, prepared: Prepared | None,
                    exe: str, container_id: str) -> NoReturn:
    while True:
        try:
            conn, _ = listener.accept()
            break
        except InterruptedError:
            continue
        except OSError:
            os._exit(1)
    listener.close()
    try:
        if conn.recv(16) != b"start":
            os._exit(1)
        if ctx.spec.hooks.start_container:
            from matou.runtime import hooks  # imported before the fork: see _launch

            state = oci_state.State(container_id, oci_state.CREATED, os.getpid(), ctx.bundle,
                                    ctx.spec.annotations)
            hooks.run(ctx.spec.hooks.start_container, state, "startContainer")
        if prepared is None:
            raise FailedPrecondition("config.json has no process to start")
        become(prepared, exe)
    except BaseException as e:
        msg = str(e) if isinstance(e, MatouError) else f"{type(e).__name__}: {e}"
        try:
            conn.send(msg.encode() or b"error")
        except OSError:
            pass
        os._exit(127 if isinstance(e, OSError) or "exec" in msg else 1)


def dumps_state(rec: Record, store: Store) -> str:
    st = store.oci_state(rec)
    out = st.to_json()
    out.update({"pid": rec.pid if st.status != oci_state.STOPPED else 0, "rootfs": rec.rootfs,
                "created": rec.created, "owner": rec.owner})
    return json.dumps(out, indent=2)
