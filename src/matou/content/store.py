"""The content store: every blob once, by digest, written atomically and verified.

    <root>/
      blobs/sha256/<hex>        committed blobs, read-only (0444), never rewritten
      blobs/sha512/<hex>
      ingest/<random>           blobs being written; removed on abort, and at start-up
                                (``cleanup``) after a crash — nothing in here is visible

A blob becomes visible only by rename(2) after its bytes are fsync'd and its digest and
size have been checked, so a crash at any point leaves either the whole blob or nothing.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable, Iterator
from typing import IO, BinaryIO

from matou.errors import InvalidArgument, NotFound, from_oserror
from matou.oci.digest import Digest, Hasher, verify

CHUNK = 1 << 20


class Writer:
    """Streams one blob into the ingest area; ``commit`` verifies and publishes it."""

    def __init__(self, store: ContentStore, expected: Digest | None, size: int | None) -> None:
        self.store = store
        self.expected = expected
        self.expected_size = size
        self.hasher = Hasher(expected.algorithm if expected else "sha256")
        self.path = os.path.join(store.ingest_dir, os.urandom(12).hex())
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.done = False

    def write(self, data: bytes) -> None:
        if self.expected_size is not None and self.hasher.size + len(data) > self.expected_size:
            raise InvalidArgument(
                f"blob {self.expected or ''}: more than the {self.expected_size} bytes declared")
        self.hasher.update(data)
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def copy_from(self, stream: IO[bytes]) -> None:
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                return
            self.write(chunk)

    def commit(self) -> Digest:
        try:
            digest = self.hasher.digest()
            if self.expected_size is not None and self.hasher.size != self.expected_size:
                raise InvalidArgument(f"blob {self.expected or digest}: size {self.hasher.size} "
                                      f"does not match the declared {self.expected_size}")
            if self.expected is not None and digest != self.expected:
                raise InvalidArgument(f"blob digest mismatch: expected {self.expected}, "
                                      f"got {digest}")
            os.fsync(self.fd)
            os.fchmod(self.fd, 0o444)
            os.close(self.fd)
            self.fd = -1
            target = self.store.path(digest)
            os.makedirs(os.path.dirname(target), 0o700, exist_ok=True)
            os.rename(self.path, target)  # an existing identical blob is simply replaced
            _fsync_dir(os.path.dirname(target))
            self.done = True
            return digest
        finally:
            if not self.done:
                self.abort()

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.done = True

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if not self.done:
            self.abort()


class ContentStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.ingest_dir = os.path.join(root, "ingest")
        for d in (root, os.path.join(root, "blobs"), self.ingest_dir):
            os.makedirs(d, 0o700, exist_ok=True)

    def path(self, digest: Digest) -> str:
        return os.path.join(self.root, "blobs", digest.algorithm, digest.hex)

    def exists(self, digest: Digest) -> bool:
        return os.path.exists(self.path(digest))

    def size(self, digest: Digest) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError as e:
            raise NotFound(f"blob {digest}: not found") from e

    def open(self, digest: Digest) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError as e:
            raise NotFound(f"blob {digest}: not found") from e

    def read(self, digest: Digest) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def writer(self, expected: Digest | None = None, size: int | None = None) -> Writer:
        return Writer(self, expected, size)

    def put(self, data: bytes, expected: Digest | None = None) -> Digest:
        if expected is not None and self.exists(expected):
            verify(data, expected)
            return expected
        with self.writer(expected, len(data)) as w:
            w.write(data)
            return w.commit()

    def ingest(self, stream: IO[bytes], expected: Digest | None = None,
               size: int | None = None) -> Digest:
        with self.writer(expected, size) as w:
            w.copy_from(stream)
            return w.commit()

    def delete(self, digest: Digest) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError as e:
            raise NotFound(f"blob {digest}: not found") from e

    def walk(self) -> Iterator[Digest]:
        blobs = os.path.join(self.root, "blobs")
        for algorithm in sorted(os.listdir(blobs)):
            for hex_ in sorted(os.listdir(os.path.join(blobs, algorithm))):
                yield Digest(algorithm, hex_)

    def gc(self, keep: Iterable[Digest]) -> list[Digest]:
        """Delete every blob not in ``keep``; returns what was removed."""
        wanted = set(keep)
        removed = [d for d in self.walk() if d not in wanted]
        for d in removed:
            self.delete(d)
        return removed

    def cleanup(self) -> int:
        """Drop what a crash left in the ingest area; returns how many files."""
        n = 0
        for name in os.listdir(self.ingest_dir):
            path = os.path.join(self.ingest_dir, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                n += 1
            except OSError as e:
                raise from_oserror("remove", path, e) from e
        return n


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)
