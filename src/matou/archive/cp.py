"""The tar side of ``docker cp``: a tar of one entry of a View, and a tar unpacked into
a directory of one — both by fds, never through a path the container could redirect.

    write_archive(out, view, node, top)      node (and its tree) as ``top``, ``top/…``
    extract(stream, view, dest, options)     a tar (plain, gzip, bzip2, xz, zstd) into
                                             the directory ``dest``

Out: PAX tars as Docker writes them for cp: numeric owners without names, whole-second
mtimes, directories before their contents (sorted by bytes), a second name of an inode
already written as a hard link, sockets left out, only the ``security.capability``
xattr. A mount point below the entry is crossed into the mount, as the container sees it.

In, member by member, with Docker's rules for what an existing entry becomes: a
directory over a directory merges, anything else replaces what was there (unless
``no_overwrite_dir_non_dir`` forbids a directory/non-directory swap); parents missing
from the tar are made 0755; owner from the tar (or ``owner`` for all); mode, xattrs and
times from the tar, directory times last. Hostile input is refused, never followed:

    `..` in a name or a hard link target     refused (a leading / is dropped)
    a parent that is a symlink               refused (``a -> /`` then ``a/etc/x``)
    a symlink whose target climbs out of     refused, as Docker does ("invalid symlink")
      the extraction directory
    a mount point to replace                 EBUSY, as under a real mount
    a read-only mount or root to write       EROFS
    a header larger than 16 MiB              refused (a pax header is metadata only)

May import: linux, oci, errors (and stdlib, isal, zstandard).
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import shutil
import stat
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import BinaryIO, cast

from matou.archive.compression import DECOMPRESS_ERRORS, open_decompressed
from matou.archive.view import Node, View, join
from matou.errors import InvalidArgument, MatouError, SystemError_, from_oserror

__all__ = ["CAPABILITY_XATTR", "ExtractOptions", "extract", "member_path", "write_archive"]

CHUNK = 1 << 20
MAX_METADATA = 16 << 20
MAX_NAME = 4096
CAPABILITY_XATTR = "security.capability"
PAX_XATTR = "SCHILY.xattr."
OVERLAY_XATTR_PREFIX = "trusted.overlay."
_ZEROS = bytes(CHUNK)
_END = bytes(2 * tarfile.BLOCKSIZE)
_DIR_CACHE = 64
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PAX_TIME = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?")
_IGNORED_XATTR_ERRORS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)


# -- out ------------------------------------------------------------------------------------

def write_archive(out: BinaryIO, view: View, node: Node, top: str) -> None:
    """``node`` as the member ``top`` and, for a directory, everything below it as
    ``top/rel`` (``top`` "" gives "/" and "/rel", as Docker names the root)."""
    w = _Writer(out)
    try:
        w.entry(node, top)
        if node.is_dir:
            _write_tree(w, view, node, top)
        out.write(_END)
        out.flush()
    except OSError as e:
        raise from_oserror("archive", node.path, e) from e


def _write_tree(w: _Writer, view: View, root: Node, top: str) -> None:
    stack: list[tuple[Node, str, list[str]]] = [(root, top, _names(view, root))]
    try:
        while stack:
            parent, prefix, names = stack[-1]
            if not names:
                stack.pop()
                if parent is not root:
                    parent.close()
                continue
            name = names.pop()
            node = view.child(parent, name)
            if node is None:
                continue  # gone since it was listed
            member = f"{prefix}/{name}"
            if not node.is_dir:
                with node:
                    w.entry(node, member)
                continue
            stack.append((node, member, []))  # the stack owns it from here
            w.entry(node, member)
            stack[-1] = (node, member, _names(view, node))
    finally:
        for n, _, _ in stack:
            if n is not root:
                n.close()


def _names(view: View, node: Node) -> list[str]:
    """The entries of a directory node and the mount points on it, the first last."""
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=node.fd)
    try:
        names = set(os.listdir(fd))
    finally:
        os.close(fd)
    names.update(view.mount_children(node.path))
    return sorted(names, key=os.fsencode, reverse=True)


class _Writer:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.links: dict[tuple[int, int], str] = {}
        self.buf = bytearray(CHUNK)

    def header(self, ti: tarfile.TarInfo) -> None:
        self.out.write(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def entry(self, node: Node, name: str) -> None:
        st = node.st
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            first = self.links.setdefault((st.st_dev, st.st_ino), name)
            if first != name:
                ti = _header(name, st, tarfile.LNKTYPE)
                ti.linkname = first
                self.header(ti)
                return
        if stat.S_ISREG(mode):
            self._file(node, name)
            return
        if stat.S_ISDIR(mode):
            ti = _header(name, st, tarfile.DIRTYPE)
        elif stat.S_ISLNK(mode):
            ti = _header(name, st, tarfile.SYMTYPE)
            ti.linkname = os.readlink("", dir_fd=node.fd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti = _header(name, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            ti = _header(name, st, tarfile.FIFOTYPE)
        else:
            return
        self.header(ti)

    def _file(self, node: Node, name: str) -> None:
        # the O_PATH fd is reopened through its magic link: the same inode, whatever
        # the container has done to the path since
        fd = os.open(node.proc(), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            ti = _header(name, st, tarfile.REGTYPE)
            ti.size = size = st.st_size
            try:
                cap = os.getxattr(fd, CAPABILITY_XATTR)
                ti.pax_headers = {PAX_XATTR + CAPABILITY_XATTR:
                                  cap.decode("utf-8", "surrogateescape")}
            except OSError:
                pass
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


def _header(name: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.uname = ti.gname = ""
    ti.mtime = st.st_mtime_ns // 1_000_000_000
    return ti


# -- in -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExtractOptions:
    no_overwrite_dir_non_dir: bool = False
    owner: tuple[int, int] | None = None  # (uid, gid) for every entry; None: the tar's


def member_path(name: str, member: str) -> str:
    """A member or hard link name as a path relative to the extraction directory:
    ``./`` and a leading ``/`` dropped; ``..`` anywhere refused."""
    if "\0" in name:
        raise InvalidArgument(f"archive member `{member}`: NUL byte in a name")
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"archive member `{member[:64]}…`: name longer than {MAX_NAME}")
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise InvalidArgument(f"archive member `{member}`: `..` in `{name}` would leave the "
                              "extraction directory")
    return "/".join(parts)


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile takes a corrupt header for the end of the archive; cp does not."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _StrictTarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as e:
            if not buf or buf.count(0) == tarfile.BLOCKSIZE:
                raise  # the end of the archive (a zero block, or no end marker at all)
            raise InvalidArgument(f"archive: corrupt or truncated tar header ({e})") from None


class _TarReader(tarfile.TarFile):
    members: list[tarfile.TarInfo]  # untyped in typeshed
    tarinfo = _StrictTarInfo


class _Forward:
    """The decompressed tar as a forward-only file for tarfile's seekable mode (which
    only ever seeks forward); member data goes from the read buffer straight to an fd."""

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._mv = memoryview(b"")
        self._off = 0
        self._pos = 0
        self.eof = False

    def _avail(self) -> int:
        n = len(self._mv) - self._off
        if n or self.eof:
            return n
        try:
            data = self._src.read(CHUNK)
        except DECOMPRESS_ERRORS as e:
            raise InvalidArgument(f"archive: corrupt compressed stream: {e}") from e
        if not data:
            self.eof = True
            return 0
        self._mv = memoryview(data)
        self._off = 0
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > MAX_METADATA:
            raise InvalidArgument(f"archive: tar header at offset {self._pos} is too large")
        parts = []
        need = size
        while need and (n := min(self._avail(), need)):
            parts.append(self._mv[self._off:self._off + n])
            self._off += n
            need -= n
        self._pos += size - need
        return b"".join(parts)

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0 or pos < self._pos:
            raise InvalidArgument("archive: the tar asks to seek backwards")
        need = pos - self._pos
        while need and (n := min(self._avail(), need)):
            self._off += n
            need -= n
        self._pos = pos - need
        return self._pos

    def write_to(self, fd: int, size: int, offset: int | None = None) -> int:
        """Copy the next ``size`` bytes into ``fd`` (pwrite at ``offset`` if given);
        the count copied, short only at the end of the stream."""
        need = size
        while need and (n := min(self._avail(), need)):
            view = self._mv[self._off:self._off + n]
            while view:
                if offset is None:
                    w = os.write(fd, view)
                else:
                    w = os.pwrite(fd, view, offset)
                    offset += w
                view = view[w:]
            self._off += n
            need -= n
        self._pos += size - need
        return size - need


def extract(stream: BinaryIO, view: View, dest: Node, options: ExtractOptions) -> None:
    """Unpack the tar read from ``stream`` into the directory ``dest`` of ``view``.

    On error what was unpacked before stays (as with Docker); nothing outside ``dest``
    and the mounts below it is touched. An empty stream is an empty archive.
    """
    try:
        src = open_decompressed(stream)
    except OSError as e:
        raise from_oserror("read", "archive", e) from e
    try:
        fwd = _Forward(src)
        try:
            tar = _TarReader(fileobj=cast(BinaryIO, fwd), mode="r", encoding="utf-8",
                             errors="surrogateescape")
        except tarfile.ReadError as e:
            if fwd.tell() == 0 and fwd.eof:
                return
            raise InvalidArgument(f"archive: not a tar archive ({e})") from None
        with tar, _Extractor(view, dest, options, fwd) as x:
            while True:
                try:
                    ti = tar.next()
                except MatouError:
                    raise
                except (tarfile.TarError, ValueError, UnicodeError) as e:
                    raise InvalidArgument(f"archive: malformed tar at offset {tar.offset} "
                                          f"({e})") from e
                if ti is None:
                    break
                tar.members.clear()  # one at a time: an archive may hold millions
                x.member(ti, tar.offset)
            x.finish()
    finally:
        if src is not stream:
            src.close()


def _time_ns(ti: tarfile.TarInfo, key: str) -> int | None:
    raw = ti.pax_headers.get(key)
    if raw is not None and _PAX_TIME.fullmatch(raw):
        return int(Decimal(raw).scaleb(9))
    return None


class _Extractor:
    def __init__(self, view: View, dest: Node, options: ExtractOptions, data: _Forward) -> None:
        self.view = view
        self.dest = dest
        self.opts = options
        self.data = data
        self.cache: OrderedDict[str, Node] = OrderedDict()  # rel -> directory node
        self.dir_times: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> _Extractor:
        return self

    def __exit__(self, *exc: object) -> None:
        for n in self.cache.values():
            n.close()
        self.cache.clear()

    def _path(self, rel: str) -> str:
        return join(self.dest.path, rel) if rel else self.dest.path

    # -- directories ------------------------------------------------------------------------

    def _dir(self, rel: str, member: str, *, create: bool) -> Node | None:
        """The directory ``rel`` below dest, its missing parts made when ``create``; never
        through a symlink. None if missing and not ``create``."""
        if not rel:
            return self.dest
        node = self.cache.get(rel)
        if node is not None:
            self.cache.move_to_end(rel)
            return node
        parts = rel.split("/")
        start, node = 0, self.dest
        for i in range(len(parts) - 1, 0, -1):
            cached = self.cache.get("/".join(parts[:i]))
            if cached is not None:
                start, node = i, cached
                break
        for i in range(start, len(parts)):
            sub = "/".join(parts[:i + 1])
            child = self.view.child(node, parts[i])
            if child is None:
                if not create:
                    return None
                self._writable(node, sub)
                try:
                    os.mkdir(parts[i], 0o755, dir_fd=node.fd)
                    fd = os.open(parts[i], _OPEN_DIR, dir_fd=node.fd)
                    try:
                        os.fchmod(fd, 0o755)  # mkdir's mode went through the umask
                    finally:
                        os.close(fd)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise from_oserror("mkdir", self._path(sub), e) from e
                child = self.view.child(node, parts[i])
                if child is None:
                    raise SystemError_("mkdir", self._path(sub), errno.ENOENT)
            if not child.is_dir:
                what = "a symlink (never followed)" if stat.S_ISLNK(child.st.st_mode) \
                    else "not a directory"
                child.close()
                if not create:
                    return None
                raise InvalidArgument(f"archive member `{member}`: `{self._path(sub)}` is "
                                      f"{what}")
            self.cache[sub] = node = child
            while len(self.cache) > _DIR_CACHE:
                self.cache.popitem(last=False)[1].close()
        return node

    def _forget(self, rel: str) -> None:
        below = rel + "/"
        for key in [k for k in self.cache if k == rel or k.startswith(below)]:
            self.cache.pop(key).close()

    def _writable(self, node: Node, rel: str) -> None:
        if not self.view.writable(node):
            raise SystemError_("extract", self._path(rel), errno.EROFS)

    # -- members ----------------------------------------------------------------------------

    def member(self, ti: tarfile.TarInfo, next_header: int) -> None:
        try:
            self._member(ti, next_header)
        except MatouError:
            raise
        except OSError as e:
            raise from_oserror("extract", self._path(ti.name.strip("/")), e) from e
        except (ValueError, OverflowError) as e:
            raise InvalidArgument(f"archive member `{ti.name}`: {e}") from e

    def _member(self, ti: tarfile.TarInfo, next_header: int) -> None:
        name = ti.name
        rel = member_path(name, name)
        if not rel:
            if ti.isdir():
                return  # the extraction directory itself: left as it is, as Docker does
            raise InvalidArgument(f"archive member `{name}`: names the extraction directory "
                                  "but is not a directory")
        parent_rel, _, base = rel.rpartition("/")
        parent = self._dir(parent_rel, name, create=True)
        assert parent is not None
        self._writable(parent, rel)
        path = join(parent.path, base)
        if path in self.view.mounts:  # the container sees a mount here
            self._onto_mount(ti, rel)
            return
        existing = _lstat(parent.fd, base)
        if existing is not None:
            was_dir = stat.S_ISDIR(existing.st_mode)
            if self.opts.no_overwrite_dir_non_dir and was_dir != ti.isdir():
                a, b = ("directory", "non-directory") if was_dir else ("non-directory",
                                                                        "directory")
                raise InvalidArgument(f"cannot overwrite {a} \"{path}\" with {b} "
                                      f"\"{self.dest.path}\"")
            if was_dir and ti.isdir():
                self._dir_metadata(ti, parent, base, rel)
                return
            self._remove(parent, base, rel, path, was_dir)
        if ti.islnk():
            self._hardlink(ti, parent, base, rel)
        elif ti.isreg():
            self._file(ti, parent, base, next_header)
        elif ti.isdir():
            os.mkdir(base, 0o700, dir_fd=parent.fd)
            self._dir_metadata(ti, parent, base, rel)
        elif ti.issym():
            self._check_symlink(ti, parent, rel)
            os.symlink(ti.linkname, base, dir_fd=parent.fd)
            self._metadata(ti, parent, base, chmod=False)
        elif ti.ischr() or ti.isblk():
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(ti.devmajor, ti.devminor), dir_fd=parent.fd)
            self._metadata(ti, parent, base, chmod=True)
        elif ti.isfifo():
            os.mkfifo(base, 0o600, dir_fd=parent.fd)
            self._metadata(ti, parent, base, chmod=True)
        else:
            raise InvalidArgument(f"archive member `{name}`: unhandled tar entry type "
                                  f"{ti.type!r}")

    def _remove(self, parent: Node, base: str, rel: str, path: str, is_dir: bool) -> None:
        if any(m.startswith(path + "/") for m in self.view.mounts):
            raise SystemError_("remove", path, errno.EBUSY)  # a mount point is below
        self._forget(rel)
        if not is_dir:
            os.unlink(base, dir_fd=parent.fd)
            return

        def fail(func: object, p: str, exc: object) -> None:
            e = exc[1] if isinstance(exc, tuple) else exc
            if isinstance(e, FileNotFoundError):
                return
            if isinstance(e, OSError):
                raise from_oserror("remove", path, e) from e
            raise RuntimeError(f"remove `{path}`: {e}")

        # with dir_fd, rmtree walks by fds and never descends through a symlink
        shutil.rmtree(base, dir_fd=parent.fd, onerror=fail)

    def _onto_mount(self, ti: tarfile.TarInfo, rel: str) -> None:
        """A directory member over a directory mount merges into the mount's root (its
        owner, mode, times); anything else would have to replace the mount point."""
        node = self._dir(rel, ti.name, create=False)
        if node is None or not ti.isdir():
            raise SystemError_("unlink", self._path(rel), errno.EBUSY)
        self._writable(node, rel)
        fd = os.open(node.proc(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._fd_metadata(ti, fd)
        finally:
            os.close(fd)
        self.dir_times[rel] = self._times(ti)

    def _file(self, ti: tarfile.TarInfo, parent: Node, base: str, next_header: int) -> None:
        if self.data.tell() != ti.offset_data:
            self.data.seek(ti.offset_data)
        fd = os.open(base, _CREATE, 0o600, dir_fd=parent.fd)
        try:
            if ti.sparse is not None:
                self._sparse(ti, fd, next_header)
            elif self.data.write_to(fd, ti.size) != ti.size:
                raise InvalidArgument(f"archive member `{ti.name}`: truncated data")
            self._fd_metadata(ti, fd)
            atime, mtime = self._times(ti)
            os.utime(fd, ns=(atime, mtime))
        finally:
            os.close(fd)

    def _sparse(self, ti: tarfile.TarInfo, fd: int, next_header: int) -> None:
        """GNU sparse: the archive holds only the data runs; holes stay unwritten."""
        runs = cast(list[tuple[int, int]], ti.sparse)
        if ti.offset_data + sum(n for _, n in runs) > next_header or any(
                off < 0 or n < 0 or off + n > ti.size for off, n in runs):
            raise InvalidArgument(f"archive member `{ti.name}`: bad sparse map")
        for off, n in runs:
            if self.data.write_to(fd, n, off) != n:
                raise InvalidArgument(f"archive member `{ti.name}`: truncated data")
        os.ftruncate(fd, ti.size)

    def _dir_metadata(self, ti: tarfile.TarInfo, parent: Node, base: str, rel: str) -> None:
        fd = os.open(base, _OPEN_DIR, dir_fd=parent.fd)
        try:
            self._fd_metadata(ti, fd)
        finally:
            os.close(fd)
        self.dir_times[rel] = self._times(ti)  # set last: adding children changes them

    def _owner(self, ti: tarfile.TarInfo) -> tuple[int, int]:
        return self.opts.owner if self.opts.owner is not None else (ti.uid, ti.gid)

    def _fd_metadata(self, ti: tarfile.TarInfo, fd: int) -> None:
        """Owner, then mode (chown clears setuid), then xattrs (chown clears
        security.capability) of an open file or directory."""
        os.fchown(fd, *self._owner(ti))
        os.fchmod(fd, ti.mode & 0o7777)
        for key, value in _xattrs(ti):
            _set_xattr(fd, key, value)

    def _metadata(self, ti: tarfile.TarInfo, parent: Node, base: str, *, chmod: bool) -> None:
        """The same for a symlink, device or fifo just made (never opened, never
        followed)."""
        os.chown(base, *self._owner(ti), dir_fd=parent.fd, follow_symlinks=False)
        if chmod:
            fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent.fd)
            try:
                if not stat.S_ISLNK(os.fstat(fd).st_mode):
                    os.chmod(f"/proc/self/fd/{fd}", ti.mode & 0o7777)
            finally:
                os.close(fd)
        xattrs = _xattrs(ti)
        if xattrs:
            where = f"/proc/self/fd/{parent.fd}/{base}"  # base itself, not followed
            for key, value in xattrs:
                _set_xattr(where, key, value)
        atime, mtime = self._times(ti)
        os.utime(base, ns=(atime, mtime), dir_fd=parent.fd, follow_symlinks=False)

    @staticmethod
    def _times(ti: tarfile.TarInfo) -> tuple[int, int]:
        mtime = _time_ns(ti, "mtime")
        if mtime is None:
            mtime = int(ti.mtime) * 1_000_000_000
        atime = _time_ns(ti, "atime")
        return (mtime if atime is None or atime < mtime else atime), mtime

    def _check_symlink(self, ti: tarfile.TarInfo, parent: Node, rel: str) -> None:
        """Docker refuses a relative symlink whose target, taken from where the link
        sits, leaves the extraction directory (it would never be followed here)."""
        target = ti.linkname
        if "\0" in target:
            raise InvalidArgument(f"archive member `{ti.name}`: NUL byte in a link target")
        if target.startswith("/"):
            return
        where = posixpath.normpath(posixpath.join(parent.path, target))
        top = self.dest.path.rstrip("/")
        if where != self.dest.path and not where.startswith(top + "/"):
            raise InvalidArgument(f"invalid symlink \"{self._path(rel)}\" -> \"{target}\"")

    def _hardlink(self, ti: tarfile.TarInfo, parent: Node, base: str, rel: str) -> None:
        name = ti.name
        target = member_path(ti.linkname, name)
        if not target or target == rel:
            raise InvalidArgument(f"archive member `{name}`: bad hard link target "
                                  f"`{ti.linkname}`")
        tparent_rel, _, tbase = target.rpartition("/")
        tparent = self._dir(tparent_rel, name, create=False)
        if tparent is None or join(tparent.path, tbase) in self.view.mounts:
            raise InvalidArgument(f"archive member `{name}`: hard link target "
                                  f"`{ti.linkname}` does not exist")
        tfd = os.dup(tparent.fd)  # the parent lookup below may evict it from the cache
        try:
            # no AT_SYMLINK_FOLLOW: a symlink is linked itself, never followed
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=parent.fd, follow_symlinks=False)
        except (FileNotFoundError, PermissionError) as e:
            what = "does not exist" if isinstance(e, FileNotFoundError) else "is a directory"
            raise InvalidArgument(f"archive member `{name}`: hard link target "
                                  f"`{ti.linkname}` {what}") from e
        finally:
            os.close(tfd)

    # -- end --------------------------------------------------------------------------------

    def finish(self) -> None:
        """Directory times, once nothing adds to the directories any more."""
        for rel, (atime, mtime) in reversed(self.dir_times.items()):
            try:
                node = self._dir(rel, rel, create=False)
            except MatouError:
                continue  # replaced by something else later in the archive
            if node is None:
                continue
            try:
                os.utime(node.proc(), ns=(atime, mtime))
            except OSError as e:
                raise from_oserror("set times of", node.path, e) from e


def _lstat(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _xattrs(ti: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    return [(k[len(PAX_XATTR):], v.encode("utf-8", "surrogateescape"))
            for k, v in (ti.pax_headers or {}).items()
            # overlayfs' own xattrs would steer the lookups of the container's rootfs
            if k.startswith(PAX_XATTR) and not k.startswith(PAX_XATTR + OVERLAY_XATTR_PREFIX)]


def _set_xattr(target: int | str, key: str, value: bytes) -> None:
    """On an fd, or on a path whose last component is not followed."""
    try:
        if isinstance(target, int):
            os.setxattr(target, key, value)
        else:
            os.setxattr(target, key, value, follow_symlinks=False)
    except OSError as e:  # not every file system has xattrs; Docker only warns
        if e.errno not in _IGNORED_XATTR_ERRORS:
            raise
