"""IPv4 and IPv6 address management for one subnet: the gateway first, then addresses handed out
in turn (a freed address is not the next one given, as on Docker, so a stale ARP entry
or connection does not reach a new container), recorded in a JSON file that survives
daemon restarts.

    <data-root>/network/<network-id>.json  {"Subnet", "Gateway", "Last", "Allocations": {owner: ip}}

May import: linux, errors.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import threading
from typing import Any

from matou.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from matou.linux import jsonfile

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Pool:
    def __init__(self, path: str, subnet: str, gateway: str = "",
                 ip_range: str = "") -> None:
        try:
            self.subnet = ipaddress.ip_network(subnet, strict=False)
            self.range = ipaddress.ip_network(ip_range, strict=False) if ip_range \
                else self.subnet
        except ValueError as e:
            raise InvalidArgument(f"invalid subnet {subnet!r}: {e}") from e
        if self.subnet.prefixlen > self.subnet.max_prefixlen - 2:
            raise InvalidArgument(f"subnet {subnet} is too small for containers")
        if self.range.version != self.subnet.version or \
                not self.range.subnet_of(self.subnet):  # type: ignore[arg-type]
            raise InvalidArgument(f"ip range {ip_range} is not in subnet {subnet}")
        try:
            gw = ipaddress.ip_address(gateway) if gateway else \
                self.subnet.network_address + 1
        except ValueError as e:
            raise InvalidArgument(f"invalid gateway {gateway!r}: {e}") from e
        if gw not in self.subnet:
            raise InvalidArgument(f"gateway {gw} is not in subnet {subnet}")
        self.gateway: Address = gw
        self.version = self.subnet.version
        self.path = path
        self.lock = threading.Lock()
        state = jsonfile.read(path, dict) if os.path.exists(path) else {}
        if state.get("Subnet") != str(self.subnet):
            state = {"Subnet": str(self.subnet), "Gateway": str(gw), "Last": "",
                     "Allocations": {}}
        self.state: dict[str, Any] = state
        self._save()

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    def _save(self) -> None:
        jsonfile.write_atomic(self.path, self.state)

    def _taken(self) -> set[Address]:
        return {ipaddress.ip_address(ip) for ip in self.state["Allocations"].values()}

    def _reserved(self) -> tuple[Address, ...]:
        # IPv4's network and broadcast addresses; IPv6's subnet-router anycast
        return (self.subnet.network_address,) if self.version == 6 else (
            self.subnet.network_address, self.subnet.broadcast_address)

    def allocate(self, owner: str, wanted: str = "") -> str:
        """An address for ``owner`` (the same one again if it already has one)."""
        with self.lock:
            allocations: dict[str, str] = self.state["Allocations"]
            if owner in allocations and (not wanted or allocations[owner] == wanted):
                return allocations[owner]
            taken = self._taken() | {self.gateway}
            if wanted:
                try:
                    ip = ipaddress.ip_address(wanted)
                except ValueError as e:
                    raise InvalidArgument(f"invalid IPv{self.version} address "
                                          f"{wanted!r}") from e
                if ip.version != self.version or ip not in self.subnet or \
                        ip in self._reserved():
                    raise InvalidArgument(f"address {ip} is not usable in {self.subnet}")
                if ip in taken:
                    raise AlreadyExists(f"Address already in use: {ip}")
            else:
                ip = self._next(taken)
            allocations[owner] = str(ip)
            self.state["Last"] = str(ip)
            self._save()
            return str(ip)

    def _next(self, taken: set[Address]) -> Address:
        first = int(self.range.network_address) + 1
        last = int(self.range.broadcast_address) - (1 if self.version == 4 else 0)
        start = int(ipaddress.ip_address(self.state["Last"])) + 1 if self.state["Last"] \
            else first
        if not first <= start <= last:
            start = first
        reserved = self._reserved()
        # lazily: an IPv6 range has 2**64 addresses
        for n in itertools.chain(range(start, last + 1), range(first, start)):
            ip = ipaddress.ip_address(n) if self.version == 4 else ipaddress.IPv6Address(n)
            if ip not in taken and ip not in reserved:
                return ip
        raise FailedPrecondition(f"no available IPv{self.version} addresses on this "
                                 f"network's address pools: {self.range}")

    def release(self, owner: str) -> None:
        with self.lock:
            if self.state["Allocations"].pop(owner, None) is not None:
                self._save()

    def owners(self) -> dict[str, str]:
        with self.lock:
            return dict(self.state["Allocations"])


def mac_for(ip: str) -> str:
    """Docker's bridge MAC for an address: 02:42 then the address's four bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)
