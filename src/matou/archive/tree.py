"""A directory tree reached only through directory fds, never through a symlink.

A layer is hostile until proven otherwise: an earlier member may have planted a symlink
(``a -> /``) that a later member (``a/etc/shadow``) tries to write through. So no path
is ever handed to the kernel whole. Each member's parent directory is reached by opening
one component at a time, O_PATH|O_NOFOLLOW|O_DIRECTORY, from an fd of the root, and every
create/unlink/chown/utime names a single component relative to that parent fd. A symlink
or non-directory on the way is an error, not something to follow.

Parent fds are cached (layers list a directory's members together); a removal drops the
cached fds under the removed path.

May import: errors (and stdlib).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections import OrderedDict

from matou.archive.errors import LayerError
from matou.errors import from_oserror

_OPEN_DIR = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_CACHE = 64
IMPLICIT_DIR_MODE = 0o755


def proc_path(dir_fd: int, name: str) -> str:
    """A path naming ``name`` inside the directory ``dir_fd`` for calls without dir_fd.

    /proc/self/fd/N resolves to the directory itself (not through any symlink), and
    ``name`` is one component, so *xattr(…, follow_symlinks=False) stays on the entry.
    """
    return f"/proc/self/fd/{dir_fd}/{name}"


class Tree:
    """The directory ``root`` and fds of directories below it, reached without following."""

    def __init__(self, root: str) -> None:
        self.root = root
        try:
            self.fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise from_oserror("open", root, e) from e
        self._cache: OrderedDict[str, int] = OrderedDict()

    def close(self) -> None:
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dir_fd(self, rel: str, *, member: str, create: bool) -> int | None:
        """An O_PATH fd of the directory ``rel`` ("" is the root), owned by the cache.

        Missing components are made (mode 0755) when ``create``, else the answer is None.
        A component that is a symlink or not a directory is a LayerError naming ``member``.
        The fd stays valid until the next dir_fd() or forget() call.
        """
        if not rel:
            return self.fd
        fd = self._cache.get(rel)
        if fd is not None:
            self._cache.move_to_end(rel)
            return fd
        # start from the longest cached ancestor
        parts = rel.split("/")
        start = 0
        fd = self.fd
        for i in range(len(parts) - 1, 0, -1):
            cached = self._cache.get("/".join(parts[:i]))
            if cached is not None:
                start, fd = i, cached
                break
        opened: list[tuple[str, int]] = []
        try:
            for i in range(start, len(parts)):
                sub = "/".join(parts[:i + 1])
                nfd = self._open_component(fd, parts[i], sub, member, create)
                if nfd is None:
                    return None
                opened.append((sub, nfd))
                fd = nfd
        finally:
            # intermediate directories are cached too: siblings come next in a layer
            for sub, nfd in opened:
                self._cache[sub] = nfd
                self._cache.move_to_end(sub)
            while len(self._cache) > _CACHE:
                _, old = self._cache.popitem(last=False)
                os.close(old)
        return fd

    def _open_component(self, parent: int, name: str, rel: str, member: str,
                        create: bool) -> int | None:
        for _ in range(2):
            try:
                return os.open(name, _OPEN_DIR, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    return None
                try:
                    os.mkdir(name, IMPLICIT_DIR_MODE, dir_fd=parent)
                except FileExistsError:
                    continue
                except OSError as e:
                    raise from_oserror("mkdir", self.path(rel), e) from e
                # mkdir's mode went through the umask
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=parent)
                try:
                    os.fchmod(fd, IMPLICIT_DIR_MODE)
                finally:
                    os.close(fd)
            except OSError as e:
                if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise from_oserror("open", self.path(rel), e) from e
                try:
                    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                except OSError:
                    st = None
                if st is not None and stat.S_ISLNK(st.st_mode):
                    raise LayerError(f"layer member `{member}`: parent `{rel}` is a symlink "
                                     f"(never followed)") from None
                raise LayerError(f"layer member `{member}`: parent `{rel}` is not a "
                                 f"directory") from None
        raise LayerError(f"layer member `{member}`: parent `{rel}` keeps changing")

    def forget(self, rel: str) -> None:
        """Drop cached fds of ``rel`` and everything below it (it is being removed)."""
        below = rel + "/"
        for key in [k for k in self._cache if k == rel or k.startswith(below)]:
            os.close(self._cache.pop(key))

    def path(self, rel: str) -> str:
        """``root/rel`` for messages only."""
        return os.path.join(self.root, rel) if rel else self.root

    def remove(self, parent: int, name: str, rel: str) -> bool:
        """Remove ``name`` (a file, or a directory tree) from ``parent``; False if absent.

        Never follows a symlink: unlink removes the link, shutil.rmtree with dir_fd walks by
        fds and refuses to descend into a symlink.
        """
        self.forget(rel)
        try:
            os.unlink(name, dir_fd=parent)
            return True
        except FileNotFoundError:
            return False
        except IsADirectoryError:
            pass
        except OSError as e:
            raise from_oserror("unlink", self.path(rel), e) from e

        def fail(func: object, path: str, exc: object) -> None:
            e = exc[1] if isinstance(exc, tuple) else exc
            if isinstance(e, FileNotFoundError):
                return
            if isinstance(e, OSError):
                raise from_oserror("remove", self.path(rel), e) from e
            raise RuntimeError(f"remove `{self.path(rel)}`: {e}")

        shutil.rmtree(name, dir_fd=parent, onerror=fail)
        return True
