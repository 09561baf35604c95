"""The container's filesystem view, built inside its new mount namespace.

Order (as runc, so that hooks and checks see what they expect):

    propagation of / → bind rootfs on itself → spec mounts in order → /dev nodes and
    links → (createContainer hooks, by the caller) → sysctl / hostname → masked paths →
    read-only paths → pivot_root (or MS_MOVE + chroot) → read-only root → rootfsPropagation

Every target inside the rootfs is resolved with ``secure_join`` and mounted through an
O_PATH fd (see matou.linux.mount); masked files are covered with the *host's* /dev/null,
checked to be the real 1:3 device, never the rootfs's own /dev/null (CVE-2025-31133).
"""

from __future__ import annotations

import errno
import os
import stat

from matou.cgroups import Manager
from matou.cgroups.layout import hierarchies
from matou.errors import InvalidArgument, SystemError_, from_oserror
from matou.linux import libc
from matou.linux import mount as m
from matou.oci.runtime_spec import Device, Mount, Spec

DEFAULT_DEVICES = (
    Device("/dev/null", "c", 1, 3, 0o666, 0, 0),
    Device("/dev/zero", "c", 1, 5, 0o666, 0, 0),
    Device("/dev/full", "c", 1, 7, 0o666, 0, 0),
    Device("/dev/random", "c", 1, 8, 0o666, 0, 0),
    Device("/dev/urandom", "c", 1, 9, 0o666, 0, 0),
    Device("/dev/tty", "c", 5, 0, 0o666, 0, 0),
)
DEV_LINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)


class Context:
    """What building the rootfs needs; ``devnull`` is set inside the container's init."""

    def __init__(self, spec: Spec, rootfs: str, bundle: str, cgroup: Manager,
                 new_cgroupns: bool, in_userns: bool, own_mount_ns: bool) -> None:
        self.spec = spec
        self.rootfs = rootfs            # real path, no symlinks
        self.bundle = bundle
        self.cgroup = cgroup
        self.new_cgroupns = new_cgroupns
        self.in_userns = in_userns
        # without a mount namespace of its own the container's mounts are the host's:
        # no propagation change, no pivot_root (chroot), and `delete` unmounts them
        self.own_mount_ns = own_mount_ns
        self.devnull = -1               # O_PATH fd of the host's /dev/null, verified


def open_host_devnull() -> int:
    fd = os.open("/dev/null", os.O_PATH | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise InvalidArgument("host /dev/null is not the 1:3 character device")
    return fd


def prepare_root(ctx: Context) -> None:
    spec, root = ctx.spec, ctx.rootfs
    if not ctx.own_mount_ns:
        for mnt in spec.mounts:
            _mount(ctx, mnt)
        _devices(ctx)
        return
    prop = m.PROPAGATION.get(spec.rootfs_propagation or "rslave")
    if prop is None:
        raise InvalidArgument(f"linux.rootfsPropagation: unknown {spec.rootfs_propagation!r}")
    # pivot_root refuses a shared current root, so a shared rootfsPropagation is only
    # applied to the new root after the pivot (see enter); until then follow the host
    first = libc.MS_SLAVE if prop & libc.MS_SHARED else prop
    libc.mount(None, "/", None, first | libc.MS_REC)
    _make_parent_private(root)
    libc.mount(root, root, None, libc.MS_BIND | libc.MS_REC)
    for mnt in spec.mounts:
        _mount(ctx, mnt)
    _devices(ctx)


def _make_parent_private(root: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared."""
    p = os.path.dirname(root)
    while p != "/" and not os.path.ismount(p):
        p = os.path.dirname(p)
    libc.mount(None, p, None, libc.MS_PRIVATE)


def _mount(ctx: Context, mnt: Mount) -> None:
    root = ctx.rootfs
    opts = m.parse_options(mnt.options)
    dest = mnt.destination if mnt.destination.startswith("/") else "/" + mnt.destination
    if opts.is_bind or mnt.type == "bind":
        src = mnt.source if mnt.source.startswith("/") else os.path.join(ctx.bundle, mnt.source)
        try:
            st = os.stat(src)
        except OSError as e:
            raise from_oserror("bind mount source", src, e) from e
        target = m.make_target(root, dest, stat.S_ISDIR(st.st_mode))
        m.mount_at(root, target, src, None, libc.MS_BIND | (opts.flags & libc.MS_REC))
        rest = opts.flags & ~(libc.MS_BIND | libc.MS_REC | libc.MS_REMOUNT)
        if rest:
            _remount(root, target, rest)
    elif mnt.type in ("cgroup", "cgroup2"):
        target = m.make_target(root, dest, True)
        _mount_cgroup(ctx, target, mnt.type, opts)
    else:
        if mnt.type in ("proc", "sysfs"):
            # CVE-2019-16884/19921: /proc and /sys must be real directories of the rootfs
            lexical = os.path.join(root, dest.lstrip("/"))
            if os.path.islink(lexical):
                raise InvalidArgument(f"mount destination `{dest}` is a symlink")
        target = m.make_target(root, dest, True)
        flags = opts.flags & ~libc.MS_REMOUNT
        data = opts.data or None
        if ctx.spec.mount_label and mnt.type in ("tmpfs", "devpts", "mqueue"):
            pass  # no SELinux on these hosts; the label is ignored as runc does there
        m.mount_at(root, target, mnt.source or mnt.type, mnt.type or None, flags, data)
    for p in opts.propagation:
        m.mount_at(root, target, None, None, p)


def _remount(root: str, target: str, flags: int) -> None:
    try:
        m.mount_at(root, target, None, None, libc.MS_BIND | libc.MS_REMOUNT | flags)
    except SystemError_ as e:
        if e.errno != errno.EPERM:
            raise
        # in a user namespace the flags inherited from the source are locked: keep them
        m.mount_at(root, target, None, None,
                   libc.MS_BIND | libc.MS_REMOUNT | flags | m.locked_flags(target))


def _mount_cgroup(ctx: Context, target: str, kind: str, opts: m.Options) -> None:
    root = ctx.rootfs
    layout = hierarchies()
    v2_only = all(h.version == 2 for h in layout)
    flags = opts.flags & ~(libc.MS_REMOUNT | libc.MS_BIND | libc.MS_REC)
    if v2_only or kind == "cgroup2":
        if ctx.new_cgroupns:
            m.mount_at(root, target, "cgroup2", "cgroup2", flags)
        else:
            v2 = next(h for h in layout if h.version == 2)
            m.mount_at(root, target, ctx.cgroup.dirs[v2], None, libc.MS_BIND | libc.MS_REC)
            _remount(root, target, flags)
        return
    m.mount_at(root, target, "tmpfs", "tmpfs", flags & ~libc.MS_RDONLY, "mode=755")
    for h in layout:
        if h not in ctx.cgroup.dirs and not ctx.new_cgroupns:
            continue  # the hybrid layout's cgroup2, which the container does not join
        name = os.path.basename(h.mountpoint)
        sub = m.make_target(root, os.path.join(target[len(root):], name), True)
        if ctx.new_cgroupns:
            fstype = "cgroup2" if h.version == 2 else "cgroup"
            data = None if h.version == 2 else (h.options if h.controllers
                                                 else "none," + h.options)
            m.mount_at(root, sub, fstype, fstype, flags, data)
        else:
            m.mount_at(root, sub, ctx.cgroup.dirs[h], None, libc.MS_BIND | libc.MS_REC)
            _remount(root, sub, flags)
    # co-mounted controllers appear under each of their names on the host: mirror the links
    base = os.path.dirname(layout[0].mountpoint)
    for entry in os.listdir(base):
        host = os.path.join(base, entry)
        if os.path.islink(host):
            link = os.path.join(target, entry)
            if not os.path.lexists(link):
                os.symlink(os.readlink(host), link)
    if flags & libc.MS_RDONLY:
        m.mount_at(root, target, None, None, libc.MS_BIND | libc.MS_REMOUNT | flags)


def _has_dev_mount(spec: Spec) -> bool:
    return any(os.path.normpath(x.destination) == "/dev" for x in spec.mounts)


def _devices(ctx: Context) -> None:
    root = ctx.rootfs
    devices: list[Device] = []
    if _has_dev_mount(ctx.spec):
        devices.extend(DEFAULT_DEVICES)
    devices.extend(ctx.spec.devices)
    old = os.umask(0)
    try:
        for dev in devices:
            _device(ctx, dev)
    finally:
        os.umask(old)
    if not _has_dev_mount(ctx.spec):
        return
    links = list(DEV_LINKS)
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "/dev/core"))
    for src, dst in links:
        path = m.secure_join(root, dst)
        if not os.path.lexists(path):
            os.symlink(src, path)
    ptmx = m.secure_join(root, "/dev/ptmx")
    if any(os.path.normpath(x.destination) == "/dev/pts" for x in ctx.spec.mounts):
        if os.path.lexists(ptmx):
            os.unlink(ptmx)
        os.symlink("pts/ptmx", ptmx)


def _device(ctx: Context, dev: Device) -> None:
    root = ctx.rootfs
    path = m.secure_join(root, dev.path)
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    mode = 0o666 if dev.file_mode is None else dev.file_mode & 0o7777
    kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[dev.type]
    if os.path.lexists(path):
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"device `{dev.path}` is a directory in the rootfs")
        os.unlink(path)
    try:
        if kind == stat.S_IFIFO:
            os.mkfifo(path, mode)
        elif ctx.in_userns:
            raise PermissionError(errno.EPERM, "mknod in a user namespace")
        else:
            os.mknod(path, kind | mode, os.makedev(dev.major, dev.minor))
    except PermissionError:
        # no mknod in a user namespace: bind the host's node instead
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        os.close(fd)
        m.mount_at(root, path, dev.path, None, libc.MS_BIND)
        return
    except OSError as e:
        raise from_oserror("mknod", dev.path, e) from e
    os.chmod(path, mode)
    os.lchown(path, dev.uid or 0, dev.gid or 0)


def bind_console(ctx: Context, slave: int) -> None:
    path = m.secure_join(ctx.rootfs, "/dev/console")
    if not os.path.lexists(path):
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
    m.mount_at(ctx.rootfs, path, f"/proc/self/fd/{slave}", None, libc.MS_BIND)


def mask_and_protect(ctx: Context) -> None:
    root = ctx.rootfs
    for p in ctx.spec.masked_paths:
        path = m.secure_join(root, p)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            m.mount_at(root, path, "tmpfs", "tmpfs", libc.MS_RDONLY)
        else:
            m.mount_at(root, path, f"/proc/self/fd/{ctx.devnull}", None, libc.MS_BIND)
    for p in ctx.spec.readonly_paths:
        path = m.secure_join(root, p)
        if not os.path.exists(path):
            continue
        m.mount_at(root, path, path, None, libc.MS_BIND | libc.MS_REC)
        m.mount_at(root, path, None, None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY
                   | libc.MS_REC | m.locked_flags(path))


def enter(ctx: Context, no_pivot: bool) -> None:
    root = ctx.rootfs
    if not ctx.own_mount_ns:
        os.chdir(root)
        os.chroot(".")
        os.chdir("/")
        return
    if no_pivot:
        os.chdir(root)
        libc.mount(root, "/", None, libc.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
    else:
        oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        newroot = os.open(root, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fchdir(newroot)
            libc.pivot_root(".", ".")
            # the old root now sits under the new one: detach it without touching the host
            os.fchdir(oldroot)
            libc.mount(None, ".", None, libc.MS_SLAVE | libc.MS_REC)
            libc.umount2(".", libc.MNT_DETACH)
            os.chdir("/")
        finally:
            os.close(oldroot)
            os.close(newroot)
    spec = ctx.spec
    if spec.root is not None and spec.root.readonly:
        libc.mount(None, "/", None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY
                   | m.locked_flags("/"))
    if spec.rootfs_propagation:
        libc.mount(None, "/", None, m.PROPAGATION[spec.rootfs_propagation])


def unmount_under(root: str) -> None:
    """Detach every mount at or below ``root`` in our namespace, deepest first."""
    targets = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root.rstrip("/") + "/"):
                targets.append(point)
    for point in sorted(targets, key=len, reverse=True):
        try:
            libc.umount2(point, libc.MNT_DETACH)
        except SystemError_:
            pass


_IPC_SYSCTLS = {
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
    "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
}


def check_sysctl(spec: Spec, host_ns: dict[str, bool]) -> None:
    """Only namespaced sysctls, and only in a namespace of the container's own
    (``host_ns[kind]`` is True when the container shares that namespace with the host)."""
    for key in spec.sysctl:
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            kind = "ipc"
        elif key.startswith("net."):
            kind = "network"
        elif key in ("kernel.hostname", "kernel.domainname"):
            kind = "uts"
        else:
            raise InvalidArgument(f"sysctl {key!r} is not namespaced: refused")
        if host_ns.get(kind, True):
            raise InvalidArgument(f"sysctl {key!r} needs a private {kind} namespace")


def write_sysctls(spec: Spec) -> None:
    for key, value in spec.sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        if ".." in key.split("."):
            raise InvalidArgument(f"sysctl {key!r}: bad name")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:
            raise from_oserror("write sysctl", key, e) from e
