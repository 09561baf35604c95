"""Network device flags by ioctl (enough to bring loopback up in a new network namespace)."""

from __future__ import annotations

import fcntl
import socket
import struct

from matou.errors import from_oserror

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def link_up(name: str = "lo") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            req = struct.pack("16sH14x", name.encode(), 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
            fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS,
                        struct.pack("16sH14x", name.encode(), flags | _IFF_UP))
        except OSError as e:
            raise from_oserror("link up", name, e) from e
