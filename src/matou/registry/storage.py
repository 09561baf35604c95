"""matou-registry's storage drivers: plain path I/O, no registry meaning (that is in
store.py). A path is a relative, slash-separated string; writes of whole files are atomic.

May import: errors (and stdlib).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from typing import BinaryIO, Protocol


class Driver(Protocol):
    def read(self, path: str) -> bytes | None: ...
    def write(self, path: str, data: bytes) -> None: ...      # atomic
    def append(self, path: str, chunks: Iterator[bytes]) -> int: ...  # returns the new size
    def open(self, path: str, offset: int = 0) -> BinaryIO | None: ...
    def size(self, path: str) -> int | None: ...
    def list(self, path: str) -> list[str]: ...
    def move(self, src: str, dst: str) -> None: ...
    def delete(self, path: str) -> None: ...                  # a file or a whole tree


def _check(path: str) -> str:
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"bad storage path {path!r}")
    return path


class Filesystem:
    """Files under a root directory; whole-file writes go through a temporary and rename,
    fsynced, so that a crash leaves the old content or the new, never a mix."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, 0o700, exist_ok=True)

    def _p(self, path: str) -> str:
        return os.path.join(self.root, _check(path))

    def read(self, path: str) -> bytes | None:
        try:
            with open(self._p(path), "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def write(self, path: str, data: bytes) -> None:
        full = self._p(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        tmp = f"{full}.tmp.{os.getpid()}.{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, full)

    def append(self, path: str, chunks: Iterator[bytes]) -> int:
        full = self._p(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "ab") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
            return f.tell()

    def open(self, path: str, offset: int = 0) -> BinaryIO | None:
        try:
            f = open(self._p(path), "rb")  # noqa: SIM115 (the caller closes it)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        f.seek(offset)
        return f

    def size(self, path: str) -> int | None:
        try:
            st = os.stat(self._p(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return None if os.path.isdir(self._p(path)) else st.st_size

    def list(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self._p(path) if path else self.root))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def move(self, src: str, dst: str) -> None:
        target = self._p(dst)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(self._p(src), target)

    def delete(self, path: str) -> None:
        full = self._p(path)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            try:
                os.unlink(full)
            except FileNotFoundError:
                pass


class Memory:
    """Everything in a dict: for tests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def read(self, path: str) -> bytes | None:
        return self.files.get(_check(path))

    def write(self, path: str, data: bytes) -> None:
        with self.lock:
            self.files[_check(path)] = bytes(data)

    def append(self, path: str, chunks: Iterator[bytes]) -> int:
        data = b"".join(chunks)
        with self.lock:
            self.files[_check(path)] = self.files.get(path, b"") + data
            return len(self.files[path])

    def open(self, path: str, offset: int = 0) -> BinaryIO | None:
        import io

        data = self.files.get(_check(path))
        if data is None:
            return None
        f = io.BytesIO(data)
        f.seek(offset)
        return f

    def size(self, path: str) -> int | None:
        data = self.files.get(_check(path))
        return None if data is None else len(data)

    def list(self, path: str) -> list[str]:
        prefix = f"{path}/" if path else ""
        return sorted({k[len(prefix):].split("/", 1)[0] for k in self.files
                       if k.startswith(prefix)})

    def move(self, src: str, dst: str) -> None:
        with self.lock:
            self.files[_check(dst)] = self.files.pop(_check(src))

    def delete(self, path: str) -> None:
        with self.lock:
            for k in [k for k in self.files if k == path or k.startswith(path + "/")]:
                del self.files[k]
