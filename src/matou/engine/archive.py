"""`docker cp`, the daemon's side: stat a path of a container, a tar of it, a tar
unpacked into one of its directories — running, created or exited alike.

    stat_path(svc, name, path)           ─► PathStat           (HEAD …/archive)
    archive_path(svc, name, path)        ─► (PathStat, writer)  (GET  …/archive)
    extract_to_dir(svc, name, path, …)                          (PUT  …/archive)

The container is seen as its processes see it: the rootfs with its volumes, binds and
/etc/{hosts,hostname,resolv.conf} over it (archive.view.View); a path under a mount is
the mount's source, the longest destination winning. A container that is not running
gets its snapshot mounted for the operation and unmounted after it.

Nothing runs inside the container and nothing of it is loaded (CVE-2019-14271): the tar
work is this process's own Python, in a worker thread. Paths are walked by fds from the
rootfs, one component at a time, symlinks resolved as if the rootfs were /
(CVE-2018-15664), see archive/view.py.

Docker's naming, which the CLI relies on to place what it copies:

    path         stat name   archive members
    /etc         etc         etc/  etc/passwd …
    /etc/        etc         etc/  etc/passwd …      (a trailing / follows a symlink)
    /etc/.       .           ./    ./passwd …        (the CLI copies the contents)
    /            /           /     /bin …
    /etc/passwd  passwd      passwd
    /link        link        link                    (the symlink itself; linkTarget set)
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

from matou.archive.cp import ExtractOptions, extract, write_archive
from matou.archive.view import BindMount, Node, View
from matou.engine.containers import Container, ContainerService, _mount_snapshot, _snap
from matou.errors import InvalidArgument, MatouError, NotFound, SystemError_, from_oserror
from matou.linux import libc

# Go's os.FileMode bits, as the stat JSON carries them (io/fs/format.go)
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20

_TYPE_BITS = {stat.S_IFDIR: MODE_DIR, stat.S_IFLNK: MODE_SYMLINK, stat.S_IFBLK: MODE_DEVICE,
              stat.S_IFCHR: MODE_DEVICE | MODE_CHAR_DEVICE, stat.S_IFIFO: MODE_NAMED_PIPE,
              stat.S_IFSOCK: MODE_SOCKET, stat.S_IFREG: 0}
# the files the daemon binds over every container, and where in its record they are
NETWORK_FILES = (("/etc/resolv.conf", "ResolvConfPath"), ("/etc/hostname", "HostnamePath"),
                 ("/etc/hosts", "HostsPath"))
MAX_ACCOUNT_FILE = 16 << 20  # /etc/passwd, /etc/group read for copyUIDGID


# -- Docker's path and stat conventions ---------------------------------------------------

def go_file_mode(st_mode: int) -> int:
    """A Unix st_mode as Go's os.FileMode (what Docker puts in the stat's "mode")."""
    mode = st_mode & 0o777 | _TYPE_BITS.get(stat.S_IFMT(st_mode), 0)
    if st_mode & stat.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def go_time(ns: int) -> str:
    """Nanoseconds since the epoch as Go marshals a time (RFC 3339, trailing zeros of
    the fraction dropped), in UTC."""
    secs, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def base_name(path: str) -> str:
    """Go's filepath.Base: the last element, trailing slashes ignored; "/" for "/"."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    return stripped.rsplit("/", 1)[-1]


def absolute(path: str) -> str:
    """The path as Docker takes it: absolute in the container, cleaned lexically (``..``
    stops at /), but a trailing ``/`` or ``/.`` kept, for they change the meaning."""
    parts: list[str] = []
    for p in path.split("/"):
        if p == "..":
            if parts:
                parts.pop()
        elif p not in ("", "."):
            parts.append(p)
    out = "/" + "/".join(parts)
    if base_name(path) == ".":
        out = out.rstrip("/") + "/."
    if path.endswith("/") and not out.endswith("/"):
        out += "/"
    return out


def follows_last(abs_path: str) -> bool:
    """Whether the last component is followed when it is a symlink (as lstat does
    for ``link/`` and ``link/.``)."""
    return abs_path.endswith("/") or base_name(abs_path) == "."


def archive_top(name: str) -> str:
    """The archive's top member for a path whose stat name is ``name``: the name, but
    the root becomes "" (members "/", "/bin", … as Docker writes them)."""
    return "" if name == "/" else name


@dataclass(frozen=True)
class PathStat:
    name: str
    size: int
    mode: int  # Go os.FileMode bits
    mtime: str  # RFC 3339
    link_target: str  # the fully resolved path when the entry is a symlink, else ""

    def to_json(self) -> dict[str, Any]:
        """Docker's ContainerPathStat, in its field order."""
        return {"name": self.name, "size": self.size, "mode": self.mode,
                "mtime": self.mtime, "linkTarget": self.link_target}


def _not_found(path: str, name: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {name}")


# -- the container's file system -----------------------------------------------------------

def container_mounts(c: Container) -> list[BindMount]:
    """What is mounted over the container's rootfs: the network files (unless a mount
    of the user's covers them, and once they exist), then volumes and binds."""
    record = c.r
    ro_root = bool((record.get("HostConfig") or {}).get("ReadonlyRootfs"))
    user = [m for m in record.get("Mounts") or []
            if m.get("Type") in ("bind", "volume") and m.get("Source")]
    taken = {m["Destination"] for m in user}
    out = []
    for dest, key in NETWORK_FILES:
        src = record.get(key)
        if src and dest not in taken and os.path.exists(src):
            out.append(BindMount(dest, str(src), not ro_root))
    out.extend(BindMount(str(m["Destination"]), str(m["Source"]), bool(m.get("RW", True)))
               for m in user)
    return out


def _rootfs(svc: ContainerService, c: Container) -> str:
    return os.path.join(svc._dir(c), "rootfs")


def mounted(path: str) -> bool:
    """Whether something is mounted on ``path``, by /proc/self/mountinfo (ismount()
    misses a bind mount from the same file system: a snapshot without parents)."""
    path = os.path.realpath(path)  # mountinfo names mount points without symlinks
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            point = line.split(b" ", 5)[4]
            if b"\\" in point:  # octal escapes for space, tab, newline, backslash
                point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), point)
            if os.fsdecode(point) == path:
                return True
    return False


def _unmount(path: str) -> None:
    try:
        libc.umount2(path, libc.MNT_DETACH)
    except MatouError:
        pass  # unmounted meanwhile (a start and stop of the container): nothing to do


def _open_view(svc: ContainerService, c: Container) -> tuple[View, bool]:
    """The container's view, and whether its snapshot had to be mounted for it."""
    rootfs = _rootfs(svc, c)
    ours = False
    if not mounted(rootfs):
        os.makedirs(rootfs, 0o755, exist_ok=True)
        _mount_snapshot(svc.images, _snap(c.id), rootfs)
        ours = True
    try:
        ro = bool((c.r.get("HostConfig") or {}).get("ReadonlyRootfs"))
        view = View(rootfs, container_mounts(c), root_writable=not ro)
        if ours:
            try:
                view.make_mount_points()
            except BaseException:
                view.close()
                raise
    except BaseException:
        if ours:
            _unmount(rootfs)
        raise
    return view, ours


@asynccontextmanager
async def container_view(svc: ContainerService, c: Container) -> AsyncIterator[View]:
    """The container's file system for the time of one operation. The start and
    removal of containers wait while its snapshot is being mounted; once the view is
    open it only holds fds, so a stop, or another operation's unmount, cannot pull it
    from under the operation."""
    async with svc.lock:
        if c.id not in svc.containers:
            raise NotFound(f"No such container: {c.id}")
        view, ours = await asyncio.to_thread(_open_view, svc, c)
    try:
        yield view
    finally:
        view.close()
        if ours:
            async with svc.lock:
                if not c.running:  # it may have been started on our mount meanwhile
                    await asyncio.to_thread(_unmount, _rootfs(svc, c))


def _stat(view: View, name: str, path: str) -> tuple[PathStat, Node]:
    """Docker's stat of ``path`` and the node it describes (the caller closes it)."""
    abs_path = absolute(path)
    follow = follows_last(abs_path)
    try:
        node = view.lookup(abs_path, follow=follow)
    except NotFound:
        raise _not_found(path, name) from None
    try:
        if follow and not node.is_dir:
            raise SystemError_("lstat", abs_path, errno.ENOTDIR)
        st = node.st
        target = view.resolve(abs_path) if stat.S_ISLNK(st.st_mode) else ""
        return PathStat(base_name(abs_path), st.st_size, go_file_mode(st.st_mode),
                        go_time(st.st_mtime_ns), target), node
    except BaseException:
        node.close()
        raise


def _event(svc: ContainerService, c: Container, action: str) -> None:
    svc.events.emit("container", action, c.id, {"name": c.name,
                                                 "image": str(c.r.get("ImageName", ""))})


# -- the three operations -----------------------------------------------------------------

async def stat_path(svc: ContainerService, name: str, path: str) -> PathStat:
    c = svc.get(name)
    async with container_view(svc, c) as view:

        def run() -> PathStat:
            st, node = _stat(view, name, path)
            node.close()
            return st

        return await asyncio.to_thread(run)


@asynccontextmanager
async def archive_path(svc: ContainerService, name: str, path: str
                       ) -> AsyncIterator[tuple[PathStat, Callable[[BinaryIO], None]]]:
    """The stat of ``path`` and a function that writes its tar into a file (blocking:
    call it in a thread, within this context)."""
    c = svc.get(name)
    async with container_view(svc, c) as view:
        st, node = await asyncio.to_thread(_stat, view, name, path)
        try:
            _event(svc, c, "archive-path")
            yield st, lambda out: write_archive(out, view, node, archive_top(st.name))
        finally:
            node.close()


async def extract_to_dir(svc: ContainerService, name: str, path: str, body: BinaryIO, *,
                         no_overwrite_dir_non_dir: bool = False,
                         copy_uid_gid: bool = False) -> None:
    """Unpack the tar read from ``body`` (blocking reads, from a worker thread) into
    the directory ``path`` of the container; a symlink at ``path`` is followed."""
    c = svc.get(name)
    async with container_view(svc, c) as view:
        await asyncio.to_thread(_extract, view, c, name, path, body,
                                no_overwrite_dir_non_dir, copy_uid_gid)
    _event(svc, c, "extract-to-dir")


def _extract(view: View, c: Container, name: str, path: str, body: BinaryIO,
             no_overwrite: bool, copy_uid_gid: bool) -> None:
    try:
        node = view.lookup(absolute(path), follow=True)
    except NotFound:
        raise _not_found(path, name) from None
    with node:
        if not node.is_dir:
            raise InvalidArgument("extraction point is not a directory")
        # Docker's messages and order: a volume must be writable; elsewhere, the rootfs
        if node.mount is not None and not node.mount.writable:
            raise InvalidArgument("mounted volume is marked read-only")
        if node.mount is None and not view.root_writable:
            raise InvalidArgument("container rootfs is marked read-only")
        owner = container_owner(view, str(c.r["Config"].get("User") or "")) \
            if copy_uid_gid else None
        extract(body, view, node, ExtractOptions(no_overwrite, owner))


# -- copyUIDGID ---------------------------------------------------------------------------

def container_owner(view: View, user: str) -> tuple[int, int] | None:
    """`docker cp -a`: the (uid, gid) of the container's configured user, looked up in
    the container's own /etc/passwd and /etc/group; None (keep the tar's) without one."""
    if not user:
        return None
    who, _, group = user.partition(":")
    passwd = _account_file(view, "/etc/passwd")
    entry = next((f for f in passwd if len(f) > 3 and (f[0] == who or f[2] == who)), None)
    if entry is not None and entry[2].isdigit() and entry[3].isdigit():
        uid, gid = int(entry[2]), int(entry[3])
    elif who.isdigit():
        uid, gid = int(who), 0
    else:
        raise InvalidArgument(f"unable to find user {who}: no matching entries in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((f for f in _account_file(view, "/etc/group")
                      if len(f) > 2 and f[0] == group and f[2].isdigit()), None)
            if g is None:
                raise InvalidArgument(f"unable to find group {group}: no matching entries "
                                      "in group file")
            gid = int(g[2])
    return uid, gid


def _account_file(view: View, path: str) -> list[list[str]]:
    """The colon-separated lines of a small text file of the container; [] if absent."""
    try:
        node = view.lookup(path, follow=True)
    except NotFound:
        return []
    with node:
        if not stat.S_ISREG(node.st.st_mode):
            return []
        try:
            fd = os.open(node.proc(), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise from_oserror("open", path, e) from e
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_ACCOUNT_FILE)
    return [line.split(":") for line in data.decode("utf-8", "replace").splitlines()
            if line and not line.startswith("#")]
