"""Layer tars out of directories.

    write_tar(out, root)                  every entry of a tree (docker export, the full
                                          content of a native snapshot)
    write_overlay_diff(out, upper)        an overlayfs upper dir: 0:0 char devices and
                                          trusted.overlay.opaque=y become whiteouts
    write_native_diff(out, lower, upper)  what changed from one full tree to another

The tar: PAX format; names relative, without ``./`` (directories end in ``/``); each
directory's entries sorted by their bytes, a directory before its contents; numeric
owners and no user names; mtimes in whole seconds (as Docker writes them); xattrs as
``SCHILY.xattr.*`` (but never overlayfs' own ``trusted.overlay.*``); a second name of
an inode already written becomes a hard link; sockets are left out.

Trees are walked by directory fds and symlinks are never followed: a running
container may swap a directory for a symlink to / while it is exported.

May import: linux, oci, errors (and stdlib).
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from matou.archive.apply import (
    OPAQUE_MARKER,
    OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIX,
    PAX_XATTR,
    WHITEOUT_PREFIX,
)
from matou.archive.tree import proc_path
from matou.errors import from_oserror

__all__ = ["write_native_diff", "write_overlay_diff", "write_tar"]

CHUNK = 1 << 20
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: if the file was swapped for a fifo after the lstat, open must not hang
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP)
_ZEROS = bytes(CHUNK)
_END = bytes(2 * tarfile.BLOCKSIZE)

PathFilter = Callable[[str], bool]


def _names(dfd: int) -> list[str]:
    return sorted(os.listdir(dfd), key=os.fsencode)


def _lstat(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _xattrs(dfd: int, name: str) -> dict[str, bytes]:
    """The entry's xattrs, without overlayfs' own; never follows the entry."""
    path = proc_path(dfd, name)
    try:
        keys = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in _NO_XATTRS or e.errno == errno.ENOENT:
            return {}
        raise
    out = {}
    for key in sorted(keys):
        if key.startswith(OVERLAY_XATTR_PREFIX):
            continue
        try:
            out[key] = os.getxattr(path, key, follow_symlinks=False)
        except OSError as e:
            if e.errno != errno.ENODATA:
                raise
    return out


def _is_opaque(dfd: int, name: str) -> bool:
    try:
        return os.getxattr(proc_path(dfd, name), OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError as e:
        if e.errno in (errno.ENODATA, *_NO_XATTRS):
            return False
        raise


def _is_whiteout_device(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _header(rel: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(rel)
    ti.type = kind
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid = st.st_uid
    ti.gid = st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = st.st_mtime_ns // 1_000_000_000
    return ti


class _TarWriter:
    def __init__(self, out: BinaryIO, root: str) -> None:
        self.out = out
        self.root = root
        self.links: dict[tuple[int, int], str] = {}
        self.buf = bytearray(CHUNK)

    def header(self, ti: tarfile.TarInfo) -> None:
        self.out.write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def entry(self, dfd: int, name: str, rel: str, st: os.stat_result) -> None:
        """``name`` in ``dfd`` as one tar member (a directory without its contents)."""
        try:
            self._entry(dfd, name, rel, st)
        except OSError as e:
            raise from_oserror("archive", os.path.join(self.root, rel), e) from e

    def _entry(self, dfd: int, name: str, rel: str, st: os.stat_result) -> None:
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            first = self.links.setdefault((st.st_dev, st.st_ino), rel)
            if first != rel:
                ti = _header(rel, st, tarfile.LNKTYPE)
                ti.linkname = first
                self.header(ti)
                return
        if stat.S_ISREG(mode):
            self._file(dfd, name, rel, st)
            return
        if stat.S_ISDIR(mode):
            ti = _header(rel, st, tarfile.DIRTYPE)
        elif stat.S_ISLNK(mode):
            ti = _header(rel, st, tarfile.SYMTYPE)
            ti.linkname = os.readlink(name, dir_fd=dfd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti = _header(rel, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
            ti.devmajor = os.major(st.st_rdev)
            ti.devminor = os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            ti = _header(rel, st, tarfile.FIFOTYPE)
        else:
            return
        self._add_xattrs(ti, dfd, name)
        self.header(ti)

    def _add_xattrs(self, ti: tarfile.TarInfo, dfd: int, name: str) -> None:
        xattrs = _xattrs(dfd, name)
        if xattrs:
            ti.pax_headers = {PAX_XATTR + key: value.decode("utf-8", "surrogateescape")
                              for key, value in xattrs.items()}

    def _file(self, dfd: int, name: str, rel: str, st: os.stat_result) -> None:
        fd = os.open(name, _OPEN_FILE, dir_fd=dfd)
        try:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode):
                return  # replaced since it was listed
            ti = _header(rel, fst, tarfile.REGTYPE)
            ti.size = size = fst.st_size
            self._add_xattrs(ti, dfd, name)
            self.header(ti)
            view = memoryview(self.buf)
            left = size
            while left:
                n = os.readv(fd, [view[:min(left, CHUNK)]])
                if not n:
                    break
                self.out.write(view[:n])
                left -= n
            while left:  # the file shrank while being read: keep the archive well-formed
                n = min(left, CHUNK)
                self.out.write(_ZEROS[:n])
                left -= n
            self.out.write(_ZEROS[:-size % tarfile.BLOCKSIZE])
        finally:
            os.close(fd)

    def whiteout(self, rel: str, st: os.stat_result) -> None:
        """``.wh.NAME`` for ``rel`` (an empty file; owner and mtime from ``st``)."""
        parent, _, name = rel.rpartition("/")
        wh = f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name
        ti = _header(wh, st, tarfile.REGTYPE)
        ti.mode = 0o600
        self.header(ti)

    def opaque(self, rel: str, st: os.stat_result) -> None:
        """``DIR/.wh..wh..opq`` after the entry of the opaque directory ``rel``."""
        ti = _header(f"{rel}/{OPAQUE_MARKER}", st, tarfile.REGTYPE)
        ti.mode &= 0o777
        self.header(ti)

    def finish(self) -> None:
        self.out.write(_END)
        self.out.flush()


def _open_root(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise from_oserror("open", path, e) from e


def _walk(root_fd: int, root: str,
          keep: PathFilter | None = None) -> Iterator[tuple[int, str, str, os.stat_result]]:
    """(dir fd, name, relative path, lstat) of every entry, sorted, depth-first.

    A directory is yielded before its contents; its fd stays open while they are.
    """
    stack: list[tuple[int, str, Iterator[str]]] = [(root_fd, "", iter(_names(root_fd)))]
    try:
        while stack:
            dfd, drel, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if dfd != root_fd:
                    os.close(dfd)
                continue
            rel = f"{drel}/{name}" if drel else name
            if keep is not None and not keep(rel):
                continue
            st = _lstat(dfd, name)
            if st is None:
                continue
            yield dfd, name, rel, st
            if stat.S_ISDIR(st.st_mode):
                try:
                    cfd = os.open(name, _OPEN_DIR, dir_fd=dfd)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # removed or swapped since the lstat
                except OSError as e:
                    raise from_oserror("open", os.path.join(root, rel), e) from e
                stack.append((cfd, rel, iter([])))  # closed by the finally if listing fails
                stack[-1] = (cfd, rel, iter(_names(cfd)))
    finally:
        for dfd, _, _ in stack:
            if dfd != root_fd:
                os.close(dfd)


def write_tar(out: BinaryIO, root: str, *, prefix_filter: PathFilter | None = None) -> None:
    """A tar of everything under ``root`` (not ``root`` itself).

    ``prefix_filter``, if given, is called with each relative path ("etc/passwd") and
    leaves out the entries (and whole directories) for which it returns False.
    """
    rfd = _open_root(root)
    try:
        w = _TarWriter(out, root)
        for dfd, name, rel, st in _walk(rfd, root, prefix_filter):
            w.entry(dfd, name, rel, st)
        w.finish()
    finally:
        os.close(rfd)


def write_overlay_diff(out: BinaryIO, upper: str) -> None:
    """A layer tar of an overlayfs upper dir, its whiteouts turned into ``.wh.`` entries."""
    rfd = _open_root(upper)
    try:
        w = _TarWriter(out, upper)
        for dfd, name, rel, st in _walk(rfd, upper):
            if _is_whiteout_device(st):
                w.whiteout(rel, st)
                continue
            w.entry(dfd, name, rel, st)
            if stat.S_ISDIR(st.st_mode) and _is_opaque(dfd, name):
                w.opaque(rel, st)
        w.finish()
    finally:
        os.close(rfd)


def _kind(st: os.stat_result) -> int:
    return stat.S_IFMT(st.st_mode)


def _changed(lfd: int, ufd: int, name: str, lst: os.stat_result, ust: os.stat_result) -> bool:
    """Whether ``name`` differs between the trees (content is taken as equal when the
    metadata is: type, mode, owner, size, mtime in ns, device, link target, xattrs)."""
    if (lst.st_mode != ust.st_mode or lst.st_uid != ust.st_uid or lst.st_gid != ust.st_gid
            or lst.st_mtime_ns != ust.st_mtime_ns):
        return True
    mode = ust.st_mode
    if stat.S_ISREG(mode) and lst.st_size != ust.st_size:
        return True
    if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and lst.st_rdev != ust.st_rdev:
        return True
    if stat.S_ISLNK(mode) and os.readlink(name, dir_fd=lfd) != os.readlink(name, dir_fd=ufd):
        return True
    return _xattrs(lfd, name) != _xattrs(ufd, name)


@dataclass
class _Level:
    """A directory being compared: its fds in both trees (lower -1 where all is new)."""

    lfd: int
    ufd: int
    name: str
    rel: str
    st: os.stat_result
    written: bool
    names: Iterator[str] = field(default_factory=lambda: iter(()))


def write_native_diff(out: BinaryIO, lower: str, upper: str) -> None:
    """A layer tar of the changes from the tree ``lower`` to the tree ``upper``.

    Added and changed entries are written as write_tar would; a path gone from
    ``upper`` becomes ``.wh.NAME`` (one for a whole directory). A directory is written
    when it changed or anything below it did (so applying the layer restores its
    mode and mtime, as Docker does); its unchanged contents are not.
    """
    lroot = _open_root(lower)
    roots = {-1, lroot}
    stack: list[_Level] = []
    try:
        uroot = _open_root(upper)
        roots.add(uroot)
        w = _TarWriter(out, upper)
        stack.append(_Level(lroot, uroot, "", "", os.fstat(uroot), True,
                            iter(_merged(lroot, uroot))))

        def parents() -> None:
            """Write the headers of the directories above the next entry, once."""
            for i in range(1, len(stack)):
                level = stack[i]
                if not level.written:
                    w.entry(stack[i - 1].ufd, level.name, level.rel, level.st)
                    level.written = True

        while stack:
            top = stack[-1]
            name = next(top.names, None)
            if name is None:
                stack.pop()
                for fd in (top.lfd, top.ufd):
                    if fd not in roots:
                        os.close(fd)
                continue
            rel = f"{top.rel}/{name}" if top.rel else name
            lfd, ufd = top.lfd, top.ufd
            try:
                lst = _lstat(lfd, name) if lfd >= 0 else None
                ust = _lstat(ufd, name)
                if ust is None:
                    if lst is not None:
                        parents()
                        w.whiteout(rel, top.st)  # dated like the dir that lost it
                    continue
                same_kind = lst is not None and _kind(lst) == _kind(ust)
                changed = lst is None or not same_kind or _changed(lfd, ufd, name, lst, ust)
                if changed:
                    parents()
                    w.entry(ufd, name, rel, ust)
                if not stat.S_ISDIR(ust.st_mode):
                    continue
                level = _Level(-1, -1, name, rel, ust, changed)
                stack.append(level)  # its fds are closed by the finally if opening fails
                if same_kind:
                    level.lfd = os.open(name, _OPEN_DIR, dir_fd=lfd)
                level.ufd = os.open(name, _OPEN_DIR, dir_fd=ufd)
                level.names = iter(_merged(level.lfd, level.ufd))
            except OSError as e:
                raise from_oserror("diff", os.path.join(upper, rel), e) from e
        w.finish()
    finally:
        for level in stack:
            for fd in (level.lfd, level.ufd):
                if fd not in roots:
                    os.close(fd)
        for fd in roots - {-1}:
            os.close(fd)


def _merged(lfd: int, ufd: int) -> list[str]:
    names = set(os.listdir(ufd))
    if lfd >= 0:
        names.update(os.listdir(lfd))
    return sorted(names, key=os.fsencode)
