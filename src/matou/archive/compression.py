"""Layer compression: sniff and undo it on read, add it on write.

Readers work on non-seekable streams (an HTTP body, a pipe): the first bytes are read
once to sniff the magic and then replayed in front of the rest. gzip goes through isal
(several times faster than zlib); stdlib gzip is the fallback when isal is missing.

May import: errors (and stdlib, isal, zstandard).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from typing import BinaryIO, cast

from matou.errors import InvalidArgument

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"
_SNIFF = 6
_READ_SIZE = 1 << 20
KINDS = ("gzip", "zstd", "none")


def _decompress_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a decompressor raises on corrupt or truncated input."""
    errs: list[type[BaseException]] = [EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError]
    try:
        from isal import isal_zlib

        errs.append(cast(type[BaseException], isal_zlib.error))
    except ImportError:
        pass
    try:
        import zstandard

        errs.append(zstandard.ZstdError)
    except ImportError:
        pass
    return tuple(errs)


DECOMPRESS_ERRORS = _decompress_errors()


class _Replay(io.RawIOBase):
    """``head`` followed by the rest of ``stream``; closing it leaves ``stream`` open."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def read(self, size: int = -1) -> bytes:
        if self._head:
            return super().read(size) or b""
        if size is None or size < 0:
            return self._stream.read()
        return self._stream.read(size)


class _ZstdFrames(io.RawIOBase):
    """The compressed source, passed through, its frame structure followed on the way.

    python-zstandard's stream_reader ends quietly when its input stops inside a frame
    (a cut download reads as a short layer); this follows frame and block headers,
    skipping their contents, and raises at an end that falls inside a frame.
    """

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._state = "magic"
        self._need = 4  # bytes of the header being collected
        self._head = b""
        self._skip = 0  # bytes of content to pass over
        self._checksum = False
        self._tracking = True

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._src.read(len(b))
        n = len(data)
        if not n:
            if self._tracking and (self._state != "magic" or self._head or self._skip):
                import zstandard

                raise zstandard.ZstdError("zstd stream is truncated (ends inside a frame)")
            return 0
        b[:n] = data
        if self._tracking:
            self._follow(memoryview(data))
        return n

    def _follow(self, view: memoryview) -> None:
        i, n = 0, len(view)
        while i < n and self._tracking:
            if self._skip:
                k = min(self._skip, n - i)
                self._skip -= k
                i += k
                continue
            k = min(self._need - len(self._head), n - i)
            self._head += view[i:i + k]
            i += k
            if len(self._head) == self._need:
                head, self._head = self._head, b""
                self._header(head)

    def _header(self, h: bytes) -> None:
        if self._state == "magic":
            magic = int.from_bytes(h, "little")
            if h == ZSTD_MAGIC:
                self._state, self._need = "descriptor", 1
            elif magic & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame: 4-byte size follows
                self._state, self._need = "skippable", 4
            else:
                self._tracking = False  # not zstd: the decompressor reports it
        elif self._state == "skippable":
            self._skip = int.from_bytes(h, "little")
            self._state, self._need = "magic", 4
        elif self._state == "descriptor":
            d = h[0]
            single = (d >> 5) & 1
            self._checksum = bool((d >> 2) & 1)
            fcs = (single, 2, 4, 8)[d >> 6]
            self._skip = (0 if single else 1) + (0, 1, 2, 4)[d & 3] + fcs
            self._state, self._need = "block", 3
        else:  # a block header: last flag, type, size
            v = int.from_bytes(h, "little")
            btype, size = (v >> 1) & 3, v >> 3
            self._skip = 1 if btype == 1 else size
            if v & 1:
                self._skip += 4 if self._checksum else 0
                self._state, self._need = "magic", 4


def _seekable(stream: BinaryIO) -> bool:
    try:
        return stream.seekable()
    except (AttributeError, OSError, ValueError):
        return False


def open_decompressed(stream: BinaryIO) -> BinaryIO:
    """``stream`` decompressed as its magic says (gzip, zstd, xz, bzip2), else as it is.

    A plain seekable stream comes back itself (sniffed with read + seek back); others
    are sniffed by reading their first bytes once and replaying them. Closing the
    result does not close ``stream``.
    """
    if _seekable(stream):
        pos = stream.tell()
        head = stream.read(_SNIFF)
        stream.seek(pos)
        src: BinaryIO = stream
    else:
        head = b""
        while len(head) < _SNIFF:
            more = stream.read(_SNIFF - len(head))
            if not more:
                break
            head += more
        src = cast(BinaryIO, _Replay(head, stream))
    if head.startswith(GZIP_MAGIC):
        try:
            from isal import igzip

            return cast(BinaryIO, igzip.IGzipFile(  # type: ignore[no-untyped-call]
                fileobj=src, mode="rb"))
        except ImportError:  # pragma: no cover - isal is a dependency
            return cast(BinaryIO, gzip.GzipFile(fileobj=src, mode="rb"))
    if head.startswith(ZSTD_MAGIC):
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(
            cast(BinaryIO, _ZstdFrames(src)), read_size=_READ_SIZE, read_across_frames=True,
            closefd=False)
        return cast(BinaryIO, reader)
    if head.startswith(XZ_MAGIC):
        return cast(BinaryIO, lzma.LZMAFile(src, "rb"))
    if head.startswith(BZIP2_MAGIC):
        return cast(BinaryIO, bz2.BZ2File(src, "rb"))
    if src is stream:
        return stream
    return cast(BinaryIO, io.BufferedReader(cast(io.RawIOBase, src), _READ_SIZE))


class _Uncompressed(io.RawIOBase):
    """The "none" writer: passes writes through; closing flushes ``out``, never closes it."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._out.write(b)
        return len(b)

    def flush(self) -> None:
        if not self.closed:
            self._out.flush()

    def close(self) -> None:
        if not self.closed:
            self._out.flush()
        super().close()


class _Compressed(io.RawIOBase):
    """A compressing writer over ``out``: closing ends the stream and flushes ``out``."""

    def __init__(self, out: BinaryIO, inner: BinaryIO) -> None:
        self._out = out
        self._inner = inner

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._inner.write(b)
        return len(b)

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
            self._out.flush()
        super().close()


def compressor(out: BinaryIO, kind: str = "gzip", level: int = 1) -> BinaryIO:
    """A writer that compresses into ``out`` (``gzip``, ``zstd`` or ``none``).

    Closing it writes the stream's trailer and flushes ``out`` but leaves it open.
    ``level`` is the codec's own scale; isal's gzip has levels 0-3 (higher is clamped).
    """
    inner: BinaryIO
    if kind == "gzip":
        try:
            from isal import igzip

            inner = cast(BinaryIO, igzip.IGzipFile(  # type: ignore[no-untyped-call]
                fileobj=out, mode="wb", compresslevel=max(0, min(level, 3)), mtime=0))
        except ImportError:  # pragma: no cover - isal is a dependency
            inner = cast(BinaryIO, gzip.GzipFile(
                fileobj=out, mode="wb", compresslevel=max(1, min(level, 9)), mtime=0))
    elif kind == "zstd":
        import zstandard

        inner = cast(BinaryIO, zstandard.ZstdCompressor(level=level).stream_writer(
            out, closefd=False))
    elif kind == "none":
        return cast(BinaryIO, _Uncompressed(out))
    else:
        raise InvalidArgument(f"compression `{kind}`: not one of {', '.join(KINDS)}")
    return cast(BinaryIO, _Compressed(out, inner))
