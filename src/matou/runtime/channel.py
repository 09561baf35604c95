"""Typed messages between the runtime and its children over a SOCK_SEQPACKET pair.

Each message is one JSON object with a "type"; an "error" message carries the child's
failure text, which the parent re-raises as its own error.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from matou.errors import MatouError


class ChildError(MatouError):
    pass


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        return cls(a), cls(b)

    def send(self, kind: str, **fields: Any) -> None:
        self.sock.send(json.dumps({"type": kind, **fields}).encode())

    def recv(self) -> dict[str, Any]:
        data = self.sock.recv(65536)
        if not data:
            raise ChildError("container init exited before finishing its setup")
        msg: dict[str, Any] = json.loads(data)
        if msg.get("type") == "error":
            raise ChildError(str(msg.get("message")))
        return msg

    def expect(self, kind: str) -> dict[str, Any]:
        msg = self.recv()
        if msg.get("type") != kind:
            raise ChildError(f"protocol: expected {kind!r}, got {msg.get('type')!r}")
        return msg

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
