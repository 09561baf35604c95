"""The decompressed layer stream: hashed, counted and read ahead while the tar is applied.

    caller's stream ─► decompressor ─► read-ahead thread ──queue──► LayerStream ─► tarfile
                        (isal/zstd)     1 MiB chunks: count,         headers: read()
                                        max_size, sha256             file data: write_to(fd)

Decompression and sha256 release the GIL, so the thread overlaps them with the file
writes of the applying thread (as ``tar -xz`` overlaps gzip and tar). File data goes from
the decompressed chunk to the file with no copy in between. The stream only moves
forward; tarfile reads it in its seekable mode, which never seeks backwards.

May import: errors (and stdlib).
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
from typing import BinaryIO

from matou.archive.compression import DECOMPRESS_ERRORS
from matou.archive.errors import LayerError
from matou.errors import from_oserror

CHUNK = 1 << 20
_DEPTH = 6
# the longest read tarfile may ask for at once (a pax or GNU long-name header); a
# member's data is never read this way, so a larger request is a hostile header
MAX_METADATA = 16 << 20


class _ReadAhead:
    def __init__(self, src: BinaryIO, max_size: int | None) -> None:
        self._src = src
        self._max = max_size
        self._q: queue.Queue[bytes | BaseException] = queue.Queue(_DEPTH)
        self._stop = threading.Event()
        self.sha = hashlib.sha256()
        self.size = 0
        self._thread = threading.Thread(target=self._run, name="matou-layer-read", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data = self._src.read(CHUNK)
                except DECOMPRESS_ERRORS as e:
                    raise LayerError(f"layer: corrupt compressed stream: {e}") from e
                except OSError as e:  # the source failed, not the layer
                    raise from_oserror("read", "layer stream", e) from e
                if not data:
                    self._put(b"")
                    return
                self.size += len(data)
                if self._max is not None and self.size > self._max:
                    raise LayerError(f"layer: uncompressed size exceeds the limit of "
                                     f"{self._max} bytes")
                self.sha.update(data)
                self._put(bytes(data))
        except BaseException as e:  # handed to the applying thread, which raises it
            self._put(e)

    def get(self) -> bytes | BaseException:
        return self._q.get()

    def stop(self) -> None:
        self._stop.set()
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        # the thread leaves at its next put; a read blocked on the caller's stream
        # returns first (the caller's stream is never used after apply_layer returns)
        self._thread.join()


class LayerStream:
    """The uncompressed layer as a forward-only file for tarfile, plus zero-copy data."""

    def __init__(self, src: BinaryIO, max_size: int | None = None) -> None:
        self._ahead = _ReadAhead(src, max_size)
        self._mv = memoryview(b"")
        self._off = 0
        self._pos = 0
        self._eof = False

    def __enter__(self) -> LayerStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._ahead.stop()

    def _load(self) -> bool:
        """Make the next chunk current; False at the end of the stream."""
        if self._eof:
            return False
        item = self._ahead.get()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        if not item:
            self._eof = True
            return False
        self._mv = memoryview(item)
        self._off = 0
        return True

    def _avail(self) -> int:
        n = len(self._mv) - self._off
        if n == 0 and self._load():
            n = len(self._mv)
        return n

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > MAX_METADATA:
            raise LayerError(f"layer: tar header at offset {self._pos} is too large")
        parts = []
        need = size
        while need:
            n = min(self._avail(), need)
            if not n:
                break
            parts.append(self._mv[self._off:self._off + n])
            self._off += n
            need -= n
        self._pos += size - need
        return b"".join(parts)

    def readable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:
        raise io.UnsupportedOperation("layer stream: read-only")

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or pos < self._pos:
            raise io.UnsupportedOperation("layer stream: cannot seek backwards")
        self.skip(pos - self._pos)
        return self._pos

    def skip(self, size: int) -> int:
        """Drop ``size`` bytes (fewer at the end of the stream); returns how many."""
        need = size
        while need:
            n = min(self._avail(), need)
            if not n:
                break
            self._off += n
            need -= n
        self._pos += size - need
        return size - need

    def write_to(self, fd: int, size: int, offset: int | None = None) -> int:
        """Copy the next ``size`` bytes into ``fd`` (at ``offset`` if given, with pwrite).

        Returns the count copied, less than ``size`` only at the end of the stream.
        """
        need = size
        while need:
            n = min(self._avail(), need)
            if not n:
                break
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

    def drain(self) -> None:
        """Read to the end (trailing zero blocks, padding), so the digest covers it all."""
        self._pos += len(self._mv) - self._off
        self._off = len(self._mv)
        while self._load():
            self._pos += len(self._mv)
            self._off = len(self._mv)

    @property
    def at_eof(self) -> bool:
        return self._eof

    @property
    def size(self) -> int:
        """Bytes of uncompressed layer (complete once drained)."""
        return self._ahead.size

    @property
    def diff_id(self) -> str:
        """``sha256:<hex>`` of the uncompressed layer (complete once drained)."""
        return "sha256:" + self._ahead.sha.hexdigest()
