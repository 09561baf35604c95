"""Mount options, paths resolved safely inside a root, and mounts made through fds.

A container's rootfs is untrusted: it may hold symlinks pointing anywhere. Every path
inside it is resolved with ``secure_join`` (symlinks followed as if the rootfs were /),
then opened O_PATH|O_NOFOLLOW and checked again through /proc/self/fd, and the mount
goes onto that fd's magic link, so nothing can swap the path between check and mount.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from typing import NamedTuple

from matou.errors import InvalidArgument, SystemError_, from_oserror
from matou.linux import libc

# option -> (clear?, flag)
FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "acl": (False, libc.MS_POSIXACL),
    "async": (True, libc.MS_SYNCHRONOUS),
    "atime": (True, libc.MS_NOATIME),
    "bind": (False, libc.MS_BIND),
    "defaults": (False, 0),
    "dev": (True, libc.MS_NODEV),
    "diratime": (True, libc.MS_NODIRATIME),
    "dirsync": (False, libc.MS_DIRSYNC),
    "exec": (True, libc.MS_NOEXEC),
    "iversion": (False, libc.MS_I_VERSION),
    "lazytime": (False, libc.MS_LAZYTIME),
    "loud": (True, libc.MS_SILENT),
    "mand": (False, libc.MS_MANDLOCK),
    "noacl": (True, libc.MS_POSIXACL),
    "noatime": (False, libc.MS_NOATIME),
    "nodev": (False, libc.MS_NODEV),
    "nodiratime": (False, libc.MS_NODIRATIME),
    "noexec": (False, libc.MS_NOEXEC),
    "noiversion": (True, libc.MS_I_VERSION),
    "nolazytime": (True, libc.MS_LAZYTIME),
    "nomand": (True, libc.MS_MANDLOCK),
    "norelatime": (True, libc.MS_RELATIME),
    "nostrictatime": (True, libc.MS_STRICTATIME),
    "nosuid": (False, libc.MS_NOSUID),
    "nosymfollow": (False, libc.MS_NOSYMFOLLOW),
    "rbind": (False, libc.MS_BIND | libc.MS_REC),
    "relatime": (False, libc.MS_RELATIME),
    "remount": (False, libc.MS_REMOUNT),
    "ro": (False, libc.MS_RDONLY),
    "rw": (True, libc.MS_RDONLY),
    "silent": (False, libc.MS_SILENT),
    "strictatime": (False, libc.MS_STRICTATIME),
    "suid": (True, libc.MS_NOSUID),
    "sync": (False, libc.MS_SYNCHRONOUS),
    "symfollow": (True, libc.MS_NOSYMFOLLOW),
}
PROPAGATION: dict[str, int] = {
    "private": libc.MS_PRIVATE,
    "rprivate": libc.MS_PRIVATE | libc.MS_REC,
    "shared": libc.MS_SHARED,
    "rshared": libc.MS_SHARED | libc.MS_REC,
    "slave": libc.MS_SLAVE,
    "rslave": libc.MS_SLAVE | libc.MS_REC,
    "unbindable": libc.MS_UNBINDABLE,
    "runbindable": libc.MS_UNBINDABLE | libc.MS_REC,
}
# flags that a bind mount inherits and a remount may not drop where they are locked
_LOCKABLE = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC | libc.MS_RDONLY
_STATVFS_TO_MS = {
    os.ST_RDONLY: libc.MS_RDONLY,
    os.ST_NOSUID: libc.MS_NOSUID,
    os.ST_NODEV: libc.MS_NODEV,
    os.ST_NOEXEC: libc.MS_NOEXEC,
}


class Options(NamedTuple):
    flags: int
    propagation: tuple[int, ...]
    data: str

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & libc.MS_BIND)


def parse_options(options: tuple[str, ...] | list[str]) -> Options:
    flags = 0
    prop = []
    data = []
    for opt in options:
        if opt in FLAG_OPTIONS:
            clear, flag = FLAG_OPTIONS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in PROPAGATION:
            prop.append(PROPAGATION[opt])
        else:
            data.append(opt)
    return Options(flags, tuple(prop), ",".join(data))


def locked_flags(path: str) -> int:
    """The MS_* flags of the mount that holds ``path`` that a bind remount must keep."""
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _STATVFS_TO_MS.items() if f & st) & _LOCKABLE


def secure_join(root: str, unsafe: str) -> str:
    """``root``/``unsafe`` with every symlink resolved as if ``root`` were ``/``.

    Never leaves ``root``: ``..`` stops at it and absolute link targets restart at it.
    Components that do not exist yet are kept literally.
    """
    root = root.rstrip("/") or "/"
    parts: deque[str] = deque(unsafe.split("/"))
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        except OSError as e:
            raise from_oserror("lstat", candidate, e) from e
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > 255:
            raise SystemError_("resolve", os.path.join(root, unsafe.lstrip("/")), errno.ELOOP)
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        parts.extendleft(reversed(target.split("/")))
    return os.path.join(root, *resolved)


def within(root: str, path: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/") or root == ""


def open_within(root: str, path: str, flags: int = 0) -> int:
    """Open ``path`` (already secure_joined) O_PATH|O_NOFOLLOW and prove it lies in ``root``."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC | flags)
    except OSError as e:
        raise from_oserror("open", path, e) from e
    real = os.readlink(f"/proc/self/fd/{fd}")
    if not within(os.path.realpath(root), real):
        os.close(fd)
        raise InvalidArgument(f"mount target `{path}` escapes the rootfs (resolved to {real})")
    return fd


def make_target(root: str, dest: str, is_dir: bool) -> str:
    """Create the mount point ``dest`` inside ``root`` (a dir, or an empty file) safely."""
    path = secure_join(root, dest)
    parent = os.path.dirname(path)
    try:
        if not os.path.lexists(parent):
            os.makedirs(parent, mode=0o755, exist_ok=True)
        if is_dir:
            if not os.path.lexists(path):
                os.mkdir(path, 0o755)
        elif not os.path.lexists(path):
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            os.close(fd)
    except FileExistsError:
        pass
    except OSError as e:
        raise from_oserror("mkdir", path, e) from e
    # a component created above could not be a symlink; resolve again to be sure
    again = secure_join(root, dest)
    if again != path:
        raise InvalidArgument(f"mount target `{dest}` changed while being created")
    return path


def mount_at(root: str, target: str, source: str | None, fstype: str | None, flags: int,
             data: str | None = None) -> None:
    """mount(2) onto ``target`` (inside ``root``) through an O_PATH fd of it."""
    fd = open_within(root, target)
    try:
        libc.mount(source, f"/proc/self/fd/{fd}", fstype, flags, data)
    except SystemError_ as e:
        raise SystemError_("mount", f"{source or fstype} on {target}", e.errno) from e
    finally:
        os.close(fd)
