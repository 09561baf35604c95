"""Published ports: Docker's PortBindings / ExposedPorts / PublishAllPorts turned into
concrete host ports, with ephemeral ports picked from the kernel's local port range and
no host port handed out twice.

May import: errors.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

from matou.errors import AlreadyExists, FailedPrecondition, InvalidArgument


class PortMap(NamedTuple):
    proto: str           # tcp | udp | sctp
    container_port: int
    host_ip: str         # 0.0.0.0 for every address
    host_port: int


class Request(NamedTuple):
    proto: str
    container_port: int
    host_ip: str
    low: int             # 0: any free port
    high: int


def _port(text: str, what: str) -> int:
    try:
        n = int(text)
    except ValueError as e:
        raise InvalidArgument(f"invalid {what} port: {text!r}") from e
    if not 0 < n < 65536:
        raise InvalidArgument(f"invalid {what} port: {text!r}")
    return n


def parse_key(key: str) -> tuple[str, int]:
    """"80/tcp" → ("tcp", 80); a bare "80" is tcp."""
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    return proto, _port(port, "container")


def requests(bindings: dict[str, Any] | None, exposed: Iterable[str],
             publish_all: bool) -> list[Request]:
    out: list[Request] = []
    seen: set[tuple[str, int]] = set()
    for key, hosts in (bindings or {}).items():
        proto, cport = parse_key(key)
        seen.add((proto, cport))
        for h in hosts or [{}]:
            h = h or {}
            hp = str(h.get("HostPort") or "")
            low = high = 0
            if hp:
                a, _, b = hp.partition("-")
                low = _port(a, "host")
                high = _port(b, "host") if b else low
                if high < low:
                    raise InvalidArgument(f"invalid host port range: {hp}")
            out.append(Request(proto, cport, str(h.get("HostIp") or "0.0.0.0"), low, high))
    if publish_all:
        for key in exposed:
            proto, cport = parse_key(key)
            if (proto, cport) not in seen:
                out.append(Request(proto, cport, "0.0.0.0", 0, 0))
    return out


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            a, b = f.read().split()
            return int(a), int(b)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(proto: str, ip: str, port: int) -> bool:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    if proto == "sctp":
        return True
    with socket.socket(socket.AF_INET, kind) as s:
        # a listener holds the port; TIME_WAIT leftovers of earlier connections do not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


class Allocator:
    """Host ports in use by containers, daemon-wide."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.used: dict[tuple[str, int], str] = {}   # (proto, port) → owner
        self.next = 0

    def claim(self, owner: str, maps: Iterable[PortMap]) -> None:
        """Record ports already mapped (containers found running at daemon start)."""
        with self.lock:
            for m in maps:
                self.used[(m.proto, m.host_port)] = owner

    def allocate(self, owner: str, reqs: list[Request]) -> list[PortMap]:
        out: list[PortMap] = []
        with self.lock:
            try:
                for r in reqs:
                    out.append(PortMap(r.proto, r.container_port, r.host_ip,
                                       self._one(owner, r)))
            except BaseException:
                for m in out:
                    self.used.pop((m.proto, m.host_port), None)
                raise
        return out

    def _one(self, owner: str, r: Request) -> int:
        if r.low:
            for port in range(r.low, r.high + 1):
                if (r.proto, port) not in self.used and _bindable(r.proto, r.host_ip, port):
                    self.used[(r.proto, port)] = owner
                    return port
            raise AlreadyExists(f"Bind for {r.host_ip}:{r.low} failed: port is already "
                                "allocated")
        low, high = _ephemeral_range()
        span = high - low + 1
        for i in range(span):
            port = low + (self.next + i) % span
            if (r.proto, port) not in self.used and _bindable(r.proto, r.host_ip, port):
                self.next = (port - low + 1) % span
                self.used[(r.proto, port)] = owner
                return port
        raise FailedPrecondition("no free host port in the ephemeral range")

    def release(self, owner: str) -> None:
        with self.lock:
            for key in [k for k, v in self.used.items() if v == owner]:
                del self.used[key]


def docker_ports(maps: Iterable[PortMap], exposed: Iterable[str]) -> dict[str, Any]:
    """NetworkSettings.Ports: every exposed or published port, null when unpublished."""
    out: dict[str, Any] = {}
    for key in exposed:
        proto, cport = parse_key(key)
        out[f"{cport}/{proto}"] = None
    for m in maps:
        lst = out.get(f"{m.container_port}/{m.proto}") or []
        lst.append({"HostIp": m.host_ip, "HostPort": str(m.host_port)})
        out[f"{m.container_port}/{m.proto}"] = lst
    return out


def from_docker(ports: dict[str, Any] | None) -> list[PortMap]:
    out: list[PortMap] = []
    for key, hosts in (ports or {}).items():
        proto, cport = parse_key(key)
        for h in hosts or []:
            out.append(PortMap(proto, cport, h.get("HostIp") or "0.0.0.0",
                               int(h["HostPort"])))
    return out
