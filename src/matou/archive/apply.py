"""Apply one image layer (a tar: plain, gzip or zstd) onto a directory.

    apply_layer(stream, root) ─► ApplyResult(diff_id, size)

The layer is hostile until proven otherwise. Nothing is created, changed or removed
outside ``root``: member names with ``..`` are refused, a leading ``/`` is dropped (as
Docker does), and every parent directory is reached through ``tree.Tree`` (one component
at a time, never through a symlink). Symlinks in the layer are created as they are and
never followed; hard links must point at an entry already inside ``root``.

Whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are applied in one of two ways:

    "delete"    root is a full tree (native snapshot): NAME is removed; an opaque
                directory loses what lower layers put in it, not what this layer did
    "overlay"   root is an empty overlayfs upper dir: NAME becomes a 0:0 character
                device, an opaque directory gets trusted.overlay.opaque=y

Directory modes and mtimes are set at the end (adding children changes them). tarfile
only parses; its extraction code is not used.

May import: linux, oci, errors (and stdlib, isal, zstandard).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import BinaryIO, TypeVar, cast

from matou.archive.compression import open_decompressed
from matou.archive.errors import LayerError
from matou.archive.reader import LayerStream
from matou.archive.tree import Tree, proc_path
from matou.errors import InvalidArgument, MatouError, from_oserror

__all__ = ["WHITEOUT_MODES", "ApplyResult", "LayerError", "apply_layer"]

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
OVERLAY_XATTR_PREFIX = "trusted.overlay."
PAX_XATTR = "SCHILY.xattr."
WHITEOUT_MODES = ("delete", "overlay")
MAX_NAME = 4096

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP)
_PAX_TIME = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?")
_T = TypeVar("_T")


@dataclass(frozen=True)
class ApplyResult:
    diff_id: str  # sha256 of the uncompressed tar, "sha256:<hex>"
    size: int  # bytes of uncompressed tar


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile takes a corrupt header for the end of the archive; a layer may not."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _StrictTarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as e:
            if not buf or buf.count(0) == tarfile.BLOCKSIZE:
                raise  # the end of the archive (a zero block, or no end marker at all)
            raise LayerError(f"layer: corrupt or truncated tar header ({e})") from None


class _TarReader(tarfile.TarFile):
    """tarfile as a parser: members one by one, none kept (a layer may have millions)."""

    members: list[tarfile.TarInfo]  # untyped in typeshed
    tarinfo = _StrictTarInfo


def clean_name(name: str, member: str) -> str:
    """A member or link name as a path relative to the root: ``./`` and ``/`` dropped.

    ``..`` anywhere is refused rather than clamped: no legitimate layer has it.
    """
    if "\0" in name:
        raise LayerError(f"layer member `{member}`: NUL byte in a name")
    if len(name) > MAX_NAME:
        raise LayerError(f"layer member `{member[:64]}…`: name longer than {MAX_NAME}")
    parts = [p for p in name.split("/") if p and p != "."]
    if ".." in parts:
        raise LayerError(f"layer member `{member}`: `..` in `{name}` would leave the root")
    return "/".join(parts)


def _mtime_ns(ti: tarfile.TarInfo) -> int:
    raw = ti.pax_headers.get("mtime")
    if raw is not None and _PAX_TIME.fullmatch(raw):
        return int(Decimal(raw).scaleb(9))
    return int(ti.mtime) * 1_000_000_000


def _xattrs(ti: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    if not ti.pax_headers:
        return []
    return [(k[len(PAX_XATTR):], v.encode("utf-8", "surrogateescape"))
            for k, v in ti.pax_headers.items()
            # overlayfs' own xattrs are never taken from a layer: they would steer
            # lookups (redirect, origin) of the mounted snapshot
            if k.startswith(PAX_XATTR) and not k.startswith(PAX_XATTR + OVERLAY_XATTR_PREFIX)]


def _setxattr(target: int | str, key: str, value: bytes) -> None:
    """On an fd, or on a path that is not followed at its end."""
    try:
        if isinstance(target, int):
            os.setxattr(target, key, value)
        else:
            os.setxattr(target, key, value, follow_symlinks=False)
    except OSError as e:
        if e.errno not in _NO_XATTRS:
            raise


class _Applier:
    def __init__(self, tree: Tree, layer: LayerStream, *, allow_devices: bool, chown: bool,
                 overlay: bool) -> None:
        self.tree = tree
        self.layer = layer
        self.allow_devices = allow_devices
        self.chown = chown
        self.overlay = overlay
        # directory -> (mode, mtime ns), set when the layer is done
        self.dirs: dict[str, tuple[int, int]] = {}
        # "delete" mode: every path this layer put in place (and its parents), which an
        # opaque marker must spare
        self.ours: set[str] = set()

    # -- members ------------------------------------------------------------------

    def member(self, ti: tarfile.TarInfo, next_header: int) -> None:
        try:
            self._member(ti, next_header)
        except MatouError:
            raise
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                raise LayerError(f"layer member `{ti.name}`: name too long") from e
            raise from_oserror("extract", self.tree.path(ti.name.lstrip("/")), e) from e
        except (ValueError, OverflowError) as e:
            raise LayerError(f"layer member `{ti.name}`: {e}") from e

    def _member(self, ti: tarfile.TarInfo, next_header: int) -> None:
        name = ti.name
        rel = clean_name(name, name)
        if not rel:
            return
        parent, _, base = rel.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent, base, name)
            return
        if not self.overlay:
            self._mark(rel)
        if ti.islnk():
            self._hardlink(ti, parent, base, rel)
            return
        pfd = self.tree.dir_fd(parent, member=name, create=True)
        assert pfd is not None
        if ti.isreg():
            self._file(ti, pfd, base, rel, next_header)
        elif ti.isdir():
            self._dir(ti, pfd, base, rel)
        elif ti.issym():
            self._create(pfd, base, rel, lambda: os.symlink(ti.linkname, base, dir_fd=pfd))
            self._metadata(ti, pfd, base, chmod=False)
        elif ti.ischr() or ti.isblk():
            if not self.allow_devices:
                raise LayerError(f"layer member `{name}`: device nodes are not allowed")
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK
            dev = os.makedev(ti.devmajor, ti.devminor)
            self._create(pfd, base, rel, lambda: os.mknod(base, kind | 0o600, dev, dir_fd=pfd))
            self._metadata(ti, pfd, base, chmod=True)
        elif ti.isfifo():
            self._create(pfd, base, rel, lambda: os.mkfifo(base, 0o600, dir_fd=pfd))
            self._metadata(ti, pfd, base, chmod=True)
        else:
            raise LayerError(f"layer member `{name}`: unsupported tar entry type {ti.type!r}")

    def _mark(self, rel: str) -> None:
        ours = self.ours
        while rel and rel not in ours:
            ours.add(rel)
            rel = rel.rpartition("/")[0]

    def _create(self, pfd: int, base: str, rel: str, make: Callable[[], _T]) -> _T:
        """``make()`` the entry; an existing one is removed first (a dir with its tree)."""
        try:
            return make()
        except FileExistsError:
            self.tree.remove(pfd, base, rel)
            return make()

    def _file(self, ti: tarfile.TarInfo, pfd: int, base: str, rel: str,
              next_header: int) -> None:
        layer = self.layer
        if layer.tell() != ti.offset_data:
            layer.seek(ti.offset_data)
        fd = self._create(pfd, base, rel, lambda: os.open(base, _CREATE, 0o600, dir_fd=pfd))
        try:
            if ti.sparse is not None:
                self._sparse(ti, fd, next_header)
            elif layer.write_to(fd, ti.size) != ti.size:
                raise LayerError(f"layer member `{ti.name}`: truncated data")
            if self.chown:
                os.fchown(fd, ti.uid, ti.gid)
            os.fchmod(fd, ti.mode & 0o7777)  # after chown, which clears setuid
            for key, value in _xattrs(ti):  # after chown, which clears security.capability
                _setxattr(fd, key, value)
            mtime = _mtime_ns(ti)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)

    def _sparse(self, ti: tarfile.TarInfo, fd: int, next_header: int) -> None:
        """GNU sparse: the archive holds only the data runs; holes stay unwritten."""
        runs = cast(list[tuple[int, int]], ti.sparse)
        if ti.offset_data + sum(n for _, n in runs) > next_header or any(
                off < 0 or n < 0 or off + n > ti.size for off, n in runs):
            raise LayerError(f"layer member `{ti.name}`: bad sparse map")
        for off, n in runs:
            if self.layer.write_to(fd, n, off) != n:
                raise LayerError(f"layer member `{ti.name}`: truncated data")
        os.ftruncate(fd, ti.size)

    def _dir(self, ti: tarfile.TarInfo, pfd: int, base: str, rel: str) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):  # else: a directory over a directory merges
                self.tree.remove(pfd, base, rel)
                os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, _OPEN_DIR, dir_fd=pfd)
        try:
            if self.chown:
                os.fchown(fd, ti.uid, ti.gid)
            for key, value in _xattrs(ti):
                _setxattr(fd, key, value)
        finally:
            os.close(fd)
        self.dirs[rel] = (ti.mode & 0o7777, _mtime_ns(ti))

    def _metadata(self, ti: tarfile.TarInfo, pfd: int, base: str, *, chmod: bool) -> None:
        """Owner, mode, xattrs, mtime of a symlink, device or fifo just made in ``pfd``."""
        if self.chown:
            os.chown(base, ti.uid, ti.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:
            _chmod_nofollow(pfd, base, ti.mode & 0o7777)
        xattrs = _xattrs(ti)
        if xattrs:
            path = proc_path(pfd, base)
            for key, value in xattrs:
                _setxattr(path, key, value)
        mtime = _mtime_ns(ti)
        os.utime(base, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, ti: tarfile.TarInfo, parent: str, base: str, rel: str) -> None:
        name = ti.name
        target = clean_name(ti.linkname, name)
        if not target or target == rel:
            raise LayerError(f"layer member `{name}`: bad hard link target `{ti.linkname}`")
        tparent, _, tbase = target.rpartition("/")
        tfd = self.tree.dir_fd(tparent, member=name, create=False)
        if tfd is None:
            raise LayerError(f"layer member `{name}`: hard link target `{ti.linkname}` "
                             f"does not exist in the layer's root")
        tfd = os.dup(tfd)  # the next dir_fd() may evict it from the cache
        try:
            pfd = self.tree.dir_fd(parent, member=name, create=True)
            assert pfd is not None

            def link() -> None:
                # linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed
                os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)

            try:
                self._create(pfd, base, rel, link)
            except (FileNotFoundError, PermissionError) as e:
                what = "does not exist" if isinstance(e, FileNotFoundError) else "is a directory"
                raise LayerError(f"layer member `{name}`: hard link target `{ti.linkname}` "
                                 f"{what}") from e
        finally:
            os.close(tfd)

    # -- whiteouts ----------------------------------------------------------------

    def _whiteout(self, parent: str, base: str, member: str) -> None:
        if base == OPAQUE_MARKER:
            self._opaque(parent, member)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs), skipped as Docker does
        victim = base[len(WHITEOUT_PREFIX):]
        if victim in ("", ".", ".."):
            raise LayerError(f"layer member `{member}`: bad whiteout name")
        vrel = f"{parent}/{victim}" if parent else victim
        if self.overlay:
            pfd = self.tree.dir_fd(parent, member=member, create=True)
            assert pfd is not None
            self._create(pfd, victim, vrel,
                         lambda: os.mknod(victim, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd))
            if self.chown:  # 0:0 even under a setgid directory
                os.chown(victim, 0, 0, dir_fd=pfd, follow_symlinks=False)
            return
        self._mark(parent)
        dfd = self.tree.dir_fd(parent, member=member, create=False)
        if dfd is not None:
            self.tree.remove(dfd, victim, vrel)

    def _opaque(self, drel: str, member: str) -> None:
        if not self.overlay:
            self._mark(drel)
        dfd = self.tree.dir_fd(drel, member=member, create=True)
        assert dfd is not None
        fd = os.open(".", _OPEN_DIR, dir_fd=dfd)
        if self.overlay:
            try:
                os.setxattr(fd, OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
            return
        self._clear_lower(fd, drel)

    def _clear_lower(self, fd: int, drel: str) -> None:
        """Remove everything under ``fd`` that this layer did not put there; closes fd."""
        stack: list[tuple[int, str, list[str]]] = [(fd, drel, [])]
        try:
            stack[0] = (fd, drel, self._sweep(fd, drel))
            while stack:
                dfd, rel, subdirs = stack[-1]
                if not subdirs:
                    os.close(stack.pop()[0])
                    continue
                name = subdirs.pop()
                try:
                    cfd = os.open(name, _OPEN_DIR, dir_fd=dfd)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                crel = f"{rel}/{name}" if rel else name
                stack.append((cfd, crel, []))  # on the stack first: closed if the sweep fails
                stack[-1] = (cfd, crel, self._sweep(cfd, crel))
        finally:
            for dfd, _, _ in stack:
                os.close(dfd)

    def _sweep(self, dfd: int, rel: str) -> list[str]:
        """Remove the entries of ``dfd`` not in this layer; the names of its kept dirs."""
        keep = []
        with os.scandir(dfd) as it:
            entries = list(it)
        for entry in entries:
            crel = f"{rel}/{entry.name}" if rel else entry.name
            if crel not in self.ours:
                self.tree.remove(dfd, entry.name, crel)
            elif entry.is_dir(follow_symlinks=False):
                keep.append(entry.name)
        return keep

    # -- end ----------------------------------------------------------------------

    def finish(self) -> None:
        """Directory modes and mtimes, deepest last-seen first, once nothing changes them."""
        for rel, (mode, mtime) in reversed(self.dirs.items()):
            parent, _, base = rel.rpartition("/")
            try:
                pfd = self.tree.dir_fd(parent, member=rel, create=False)
            except LayerError:
                continue  # replaced later in the layer by a symlink: nothing to update
            if pfd is None:
                continue
            try:
                fd = os.open(base, _OPEN_DIR, dir_fd=pfd)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    continue
                raise from_oserror("open", self.tree.path(rel), e) from e
            try:
                os.fchmod(fd, mode)
                os.utime(fd, ns=(mtime, mtime))
            except OSError as e:
                raise from_oserror("set metadata of", self.tree.path(rel), e) from e
            finally:
                os.close(fd)


def _chmod_nofollow(pfd: int, base: str, mode: int) -> None:
    """chmod ``base`` in ``pfd`` without following it (Linux has no lchmod)."""
    fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        if not stat.S_ISLNK(os.fstat(fd).st_mode):
            os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def _apply_members(layer: LayerStream, applier: _Applier) -> None:
    # the seekable mode, not "r|": the stream only goes forward, and tarfile's own
    # stream buffer would copy itself on every 512-byte header read
    try:
        tar = _TarReader(fileobj=layer, mode="r", encoding="utf-8", errors="surrogateescape")
    except tarfile.ReadError as e:
        if layer.tell() == 0 and layer.at_eof:
            return  # an empty stream: an empty layer
        raise LayerError(f"layer: not a tar archive ({e})") from None
    with tar:
        while True:
            try:
                ti = tar.next()
            except MatouError:
                raise
            except (tarfile.TarError, OSError, ValueError, UnicodeError) as e:
                raise LayerError(f"layer: malformed tar at offset {tar.offset} ({e})") from e
            if ti is None:
                return
            tar.members.clear()
            applier.member(ti, tar.offset)


def apply_layer(stream: BinaryIO, root: str, *, allow_devices: bool = True,
                max_size: int | None = None, chown: bool = True,
                whiteout_mode: str = "delete") -> ApplyResult:
    """Unpack the layer read from ``stream`` onto the existing directory ``root``.

    ``max_size`` bounds the uncompressed bytes (checked while streaming). On LayerError
    (hostile or malformed layer) ``root`` holds partial output and should be discarded;
    nothing outside it has been touched.
    """
    if whiteout_mode not in WHITEOUT_MODES:
        raise InvalidArgument(f"whiteout mode `{whiteout_mode}`: not one of "
                              f"{', '.join(WHITEOUT_MODES)}")
    try:
        src = open_decompressed(stream)
    except OSError as e:
        raise from_oserror("read", "layer stream", e) from e
    try:
        with Tree(root) as tree, LayerStream(src, max_size) as layer:
            applier = _Applier(tree, layer, allow_devices=allow_devices, chown=chown,
                               overlay=whiteout_mode == "overlay")
            _apply_members(layer, applier)
            applier.finish()
            layer.drain()
            return ApplyResult(layer.diff_id, layer.size)
    finally:
        if src is not stream:
            src.close()  # the decompressor; the caller's stream stays open
