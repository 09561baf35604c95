"""Docker's json-file log format, written with rotation, and read back for `docker logs`.

    <id>-json.log          current file: one {"log","stream","time"} object per line
    <id>-json.log.1 … .N   older files, .1 the newest (max-file - 1 of them)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import NamedTuple

from matou.oci.timestamps import format as timestamp

MAX_LINE = 16 << 10  # a line longer than this is split, as Docker splits at 16 KiB


def parse_size(text: str) -> int:
    units = {"k": 1000, "m": 1000**2, "g": 1000**3}
    t = text.strip().lower().removesuffix("b")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


class Discard:
    """The `none` log driver: output reaches attached clients and nothing else."""

    def write(self, stream: str, data: bytes) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class Writer:
    def __init__(self, path: str, max_size: int = 20_000_000, max_file: int = 5) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self.pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream: str, data: bytes) -> None:
        buf = self.pending[stream] + data
        lines = []
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            lines.append(buf[: nl + 1])
            buf = buf[nl + 1:]
        while len(buf) >= MAX_LINE:
            lines.append(buf[:MAX_LINE])
            buf = buf[MAX_LINE:]
        self.pending[stream] = buf
        if lines:
            self._emit(stream, lines)

    def flush(self) -> None:
        for stream, buf in self.pending.items():
            if buf:
                self._emit(stream, [buf])
                self.pending[stream] = b""

    def _emit(self, stream: str, lines: list[bytes]) -> None:
        now = timestamp()
        out = b"".join(json.dumps({"log": line.decode("utf-8", "replace"), "stream": stream,
                                   "time": now}).encode() + b"\n" for line in lines)
        if self.max_size and self.size + len(out) > self.max_size and self.size > 0:
            self._rotate()
        os.write(self.fd, out)
        self.size += len(out)

    def _rotate(self) -> None:
        os.close(self.fd)
        if self.max_file == 1:
            os.truncate(self.path, 0)
        else:
            for i in range(self.max_file - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                if os.path.exists(src):
                    os.rename(src, f"{self.path}.{i}")
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                          0o640)
        self.size = 0

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


class Entry(NamedTuple):
    stream: str
    data: bytes
    time: str


def files(path: str) -> list[str]:
    """Oldest first."""
    out = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        out.append(f"{path}.{i}")
        i += 1
    return [*reversed(out), path] if os.path.exists(path) else list(reversed(out))


def read(path: str, position: dict[str, int] | None = None) -> Iterator[Entry]:
    """Every entry, oldest first. ``position`` gets the inode of the current file and the
    offset just past its last whole line read, where a Follower can take over."""
    for f in files(path):
        try:
            with open(f, "rb") as fh:
                if f == path and position is not None:
                    position["ino"] = os.fstat(fh.fileno()).st_ino
                    position["offset"] = 0
                for line in fh:
                    if not line.endswith(b"\n"):
                        break  # still being written: the follower reads it whole
                    if f == path and position is not None:
                        position["offset"] += len(line)
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue  # a line cut by a crash
                    yield Entry(obj.get("stream", "stdout"), obj.get("log", "").encode(),
                                obj.get("time", ""))
        except FileNotFoundError:
            continue


class Follower:
    """New entries of the current log file; starts over on a rotated file (a new inode
    at the same path)."""

    def __init__(self, path: str, position: dict[str, int] | None = None) -> None:
        """From the file's end, or from ``position`` (what read() got to) when the file
        there is still the one read: nothing written in between is missed."""
        self.path = path
        self.f = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.ino = os.fstat(self.f.fileno()).st_ino
        if position and position.get("ino") == self.ino:
            self.f.seek(position.get("offset", 0))
        else:
            self.f.seek(0, os.SEEK_END)
        self.partial = b""

    def poll(self) -> list[Entry]:
        out = self._read()
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            return out
        if ino != self.ino:
            self.f.close()
            self.f = open(self.path, "rb")  # noqa: SIM115
            self.ino = ino
            self.partial = b""
            out += self._read()
        return out

    def _read(self) -> list[Entry]:
        data = self.partial + self.f.read()
        lines = data.split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            out.append(Entry(obj.get("stream", "stdout"), obj.get("log", "").encode(),
                             obj.get("time", "")))
        return out

    def close(self) -> None:
        self.f.close()
