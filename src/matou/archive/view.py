"""A root directory plus bind mounts, seen as one tree, walked by fds as if root were /.

    View(root, mounts)          root: a container's rootfs; mounts: host paths that
                                appear at paths of that tree (volumes, binds, /etc/hosts)
    view.lookup(path)           ─► Node: an O_PATH fd of the entry, its path in the tree,
                                   the mount that holds it
    view.child(node, name)      one step down, never following a symlink
    view.resolve(path)          the path with every symlink resolved (missing parts kept)

The tree is hostile (CVE-2018-15664): a running container may plant or swap symlinks at
any moment. So no path is ever handed to the kernel whole: every step opens ONE
component relative to the fd of its parent, O_PATH|O_NOFOLLOW, and looks at what it got.
A symlink is read and its target walked the same way, from the view's root for an
absolute target; ``..`` pops the stack of fds already open (it never reaches the kernel,
so it cannot climb out of the root, nor out of a mount into the host). A step onto a
mount's path opens the mount's source instead, as the container would see it.

Mount sources are trusted host paths (the daemon made or was given them); only what
lies below them is walked step by step.

May import: errors (and stdlib).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from matou.errors import NotFound, SystemError_, from_oserror

__all__ = ["MAX_LINKS", "BindMount", "Node", "View", "join"]

MAX_LINKS = 40  # as the kernel's MAXSYMLINKS
_STEP = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class BindMount:
    destination: str  # absolute path inside the tree
    source: str  # host path of a directory or a file
    writable: bool


class Node:
    """An entry of the view: an O_PATH fd (of the entry itself, not followed if it is a
    symlink), its absolute path in the view, and the mount holding it (None: the root)."""

    def __init__(self, fd: int, path: str, mount: BindMount | None, st: os.stat_result,
                 *, owned: bool = True) -> None:
        self.fd = fd
        self.path = path
        self.mount = mount
        self.st = st
        self._owned = owned

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    @property
    def is_mount_root(self) -> bool:
        return self.mount is not None and self.path == self.mount.destination

    def proc(self) -> str:
        """/proc/self/fd/N: reopens exactly this inode (no path is resolved again)."""
        return f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        if self._owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


class View:
    """``root`` with ``mounts`` over it. Mount destinations are themselves resolved
    through the root's symlinks first (a volume at /var/run/x lands on /run/x when
    /var/run -> /run), as the runtime mounted them."""

    def __init__(self, root: str, mounts: Iterable[BindMount] = (), *,
                 root_writable: bool = True) -> None:
        self.root_path = root
        self.root_writable = root_writable
        try:
            fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise from_oserror("open", root, e) from e
        self.root = Node(fd, "/", None, os.fstat(fd), owned=False)
        self.mounts: dict[str, BindMount] = {}
        try:
            for m in mounts:
                dest = self._resolve(m.destination, {})
                self.mounts[dest] = BindMount(dest, m.source, m.writable)
        except BaseException:
            os.close(fd)
            raise

    def close(self) -> None:
        if self.root.fd >= 0:
            os.close(self.root.fd)
            self.root.fd = -1  # the node is not owned: its own close() leaves the fd

    def __enter__(self) -> View:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one step -----------------------------------------------------------------------

    def child(self, parent: Node, name: str) -> Node | None:
        """``name`` (one component) in the directory ``parent``, not followed; None if it
        does not exist. A mount's path gives the mount's source."""
        return self._child(parent, name, self.mounts)

    def _child(self, parent: Node, name: str, mounts: dict[str, BindMount]) -> Node | None:
        if not name or name in (".", "..") or "/" in name:
            raise ValueError(f"not one path component: {name!r}")
        path = join(parent.path, name)
        m = mounts.get(path)
        if m is not None:
            return self._open_mount(m)
        try:
            fd = os.open(name, _STEP, dir_fd=parent.fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise from_oserror("open", path, e) from e
        try:
            return Node(fd, path, parent.mount, os.fstat(fd))
        except OSError as e:
            os.close(fd)
            raise from_oserror("stat", path, e) from e

    def _open_mount(self, m: BindMount) -> Node | None:
        try:
            fd = os.open(m.source, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise from_oserror("open", m.source, e) from e
        return Node(fd, m.destination, m, os.fstat(fd))

    def mount_children(self, path: str) -> list[str]:
        """Names of the mount points directly below the directory ``path``."""
        return [d.rsplit("/", 1)[1] for d in self.mounts if d != "/" and _parent(d) == path]

    def writable(self, node: Node) -> bool:
        return node.mount.writable if node.mount is not None else self.root_writable

    # -- whole paths ----------------------------------------------------------------------

    def lookup(self, path: str, *, follow: bool) -> Node:
        """The entry at ``path`` (absolute in the view), every symlink on the way
        followed inside the view, the last one only when ``follow``.

        Raises NotFound when a component does not exist, SystemError_ ENOTDIR when one
        that must be a directory is not, ELOOP after MAX_LINKS symlinks.
        """
        stack, rest = self._walk(path, follow, self.mounts, missing_ok=False)
        assert not rest
        node = stack.pop()
        for n in stack:
            n.close()
        if node is self.root:  # a caller owns what it gets: hand out a second fd
            fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.root.fd)
            node = Node(fd, "/", None, os.fstat(fd))
        return node

    def resolve(self, path: str) -> str:
        """``path`` with every symlink resolved in the view; from the first component
        that does not exist on, the rest is kept as written (as Docker's linkTarget)."""
        return self._resolve(path, self.mounts)

    def _resolve(self, path: str, mounts: dict[str, BindMount]) -> str:
        stack, rest = self._walk(path, True, mounts, missing_ok=True)
        out = stack[-1].path
        for n in stack:
            n.close()
        parts: list[str] = [p for p in out.split("/") if p]
        for p in rest:
            if p == "..":
                if parts:
                    parts.pop()
            elif p not in ("", "."):
                parts.append(p)
        return "/" + "/".join(parts)

    def _walk(self, path: str, follow: bool, mounts: dict[str, BindMount], *,
              missing_ok: bool) -> tuple[list[Node], list[str]]:
        """The stack of nodes from the root to ``path``, and the components left over
        when ``missing_ok`` and one does not exist. The root node is not owned."""
        stack: list[Node] = [self.root]
        parts: deque[str] = deque(path.split("/"))
        links = 0
        try:
            while parts:
                part = parts.popleft()
                if part in ("", "."):
                    continue
                if part == "..":
                    if len(stack) > 1:
                        stack.pop().close()
                    continue
                top = stack[-1]
                node = None
                if stat.S_ISDIR(top.st.st_mode):
                    node = self._child(top, part, mounts)
                elif not missing_ok:
                    raise SystemError_("lstat", join(top.path, part), errno.ENOTDIR)
                if node is None:
                    if missing_ok:
                        return stack, [part, *parts]
                    raise NotFound(f"no such file or directory: {join(top.path, part)}")
                if not stat.S_ISLNK(node.st.st_mode) or not (parts or follow):
                    stack.append(node)
                    continue
                links += 1
                try:
                    target = os.readlink("", dir_fd=node.fd)
                except OSError as e:
                    raise from_oserror("readlink", node.path, e) from e
                finally:
                    node.close()
                if links > MAX_LINKS:
                    raise SystemError_("resolve", path, errno.ELOOP)
                if target.startswith("/"):
                    while len(stack) > 1:
                        stack.pop().close()
                parts.extendleft(reversed(target.split("/")))
            return stack, []
        except BaseException:
            for n in stack:
                n.close()
            raise

    # -- mount points ---------------------------------------------------------------------

    def make_mount_points(self) -> None:
        """Create the directories (and empty files) the mounts go on, as the runtime does
        at start, so a never-started container shows its volumes. Never through a
        symlink: a destination whose way is blocked by one is left alone."""
        for dest, m in sorted(self.mounts.items()):
            is_dir = os.path.isdir(m.source)
            names = [p for p in dest.split("/") if p]
            node = self.root
            opened: list[Node] = []
            try:
                for i, name in enumerate(names):
                    last = i == len(names) - 1
                    fd = _make_step(node.fd, name, directory=not last or is_dir)
                    if fd is None:
                        break
                    node = Node(fd, join(node.path, name), None, os.fstat(fd))
                    opened.append(node)
            finally:
                for n in opened:
                    n.close()


def _make_step(dfd: int, name: str, *, directory: bool) -> int | None:
    """An O_PATH fd of ``name`` in ``dfd``, created when missing; None if it exists as a
    symlink or as the wrong kind (the mount point is then not ours to make)."""
    for _ in range(2):
        try:
            fd = os.open(name, _STEP, dir_fd=dfd)
        except FileNotFoundError:
            try:
                if directory:
                    os.mkdir(name, 0o755, dir_fd=dfd)
                else:
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o644, dir_fd=dfd))
            except FileExistsError:
                pass
            except OSError as e:
                raise from_oserror("create mount point", name, e) from e
            continue
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode) == directory and not stat.S_ISLNK(st.st_mode):
            return fd
        os.close(fd)
        return None
    return None
