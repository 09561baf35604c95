from __future__ import annotations

import bz2
import io
import lzma
import os
from typing import BinaryIO

import pytest

from matou.archive.compression import DECOMPRESS_ERRORS, compressor, open_decompressed
from matou.errors import InvalidArgument

DATA = os.urandom(100_000) + b"layer " * 200_000


class Pipe(io.RawIOBase):
    """A non-seekable stream that returns short reads, like a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), len(self._data), 4099)
        b[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def _compress(kind: str, data: bytes = DATA) -> bytes:
    out = io.BytesIO()
    w = compressor(out, kind)
    w.write(data)
    w.close()
    assert not out.closed  # closing the compressor leaves `out` open
    return out.getvalue()


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none"])
def test_round_trip(kind: str) -> None:
    blob = _compress(kind)
    assert (blob == DATA) == (kind == "none")
    assert open_decompressed(io.BytesIO(blob)).read() == DATA
    # non-seekable, short reads: the sniffed bytes are replayed
    assert open_decompressed(Pipe(blob)).read() == DATA  # type: ignore[arg-type]


def test_magic_sniffing() -> None:
    assert _compress("gzip")[:2] == b"\x1f\x8b"
    assert _compress("zstd")[:4] == b"\x28\xb5\x2f\xfd"
    assert open_decompressed(io.BytesIO(lzma.compress(DATA))).read() == DATA
    assert open_decompressed(io.BytesIO(bz2.compress(DATA))).read() == DATA


def test_plain_seekable_stream_is_returned_as_is() -> None:
    f = io.BytesIO(b"plain tar bytes")
    f.read(2)
    assert open_decompressed(f) is f
    assert f.read() == b"ain tar bytes"


@pytest.mark.parametrize("data", [b"", b"\x1f", b"abc"])
def test_short_streams(data: bytes) -> None:
    src: BinaryIO = Pipe(data)  # type: ignore[assignment]
    assert open_decompressed(src).read() == data


def test_gzip_level_and_zstd_level() -> None:
    for level in (0, 3, 9):  # isal's scale is 0-3: higher is clamped
        out = io.BytesIO()
        w = compressor(out, "gzip", level)
        w.write(DATA)
        w.close()
        assert open_decompressed(io.BytesIO(out.getvalue())).read() == DATA
    out = io.BytesIO()
    w = compressor(out, "zstd", 19)
    w.write(DATA)
    w.close()
    assert open_decompressed(io.BytesIO(out.getvalue())).read() == DATA


def test_unknown_kind() -> None:
    with pytest.raises(InvalidArgument, match="lz4"):
        compressor(io.BytesIO(), "lz4")


def test_truncated_zstd_is_an_error() -> None:
    """python-zstandard alone reads a cut stream as a shorter one."""
    blob = _compress("zstd")
    for cut in (1, 4, 100, len(blob) - 6):
        with pytest.raises(DECOMPRESS_ERRORS, match="truncated"):
            open_decompressed(io.BytesIO(blob[:-cut])).read()
    two = blob + _compress("zstd", b"second frame")
    assert open_decompressed(io.BytesIO(two)).read() == DATA + b"second frame"
