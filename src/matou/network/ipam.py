"""IPv4 address management for one subnet: the gateway first, then addresses handed out
in turn (a freed address is not the next one given, as on Docker, so a stale ARP entry
or connection does not reach a new container), recorded in a JSON file that survives
daemon restarts.

    <data-root>/network/<network-id>.json  {"Subnet", "Gateway", "Last", "Allocations": {owner: ip}}

May import: linux, errors.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from typing import Any

from matou.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from matou.linux import jsonfile


class Pool:
    def __init__(self, path: str, subnet: str, gateway: str = "",
                 ip_range: str = "") -> None:
        try:
            self.subnet = ipaddress.IPv4Network(subnet, strict=False)
            self.range = ipaddress.IPv4Network(ip_range, strict=False) if ip_range \
                else self.subnet
        except ValueError as e:
            raise InvalidArgument(f"invalid subnet {subnet!r}: {e}") from e
        if self.subnet.prefixlen > 30:
            raise InvalidArgument(f"subnet {subnet} is too small for containers")
        if not self.range.subnet_of(self.subnet):
            raise InvalidArgument(f"ip range {ip_range} is not in subnet {subnet}")
        gw = ipaddress.IPv4Address(gateway) if gateway else self.subnet.network_address + 1
        if gw not in self.subnet:
            raise InvalidArgument(f"gateway {gw} is not in subnet {subnet}")
        self.gateway = gw
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

    def _taken(self) -> set[ipaddress.IPv4Address]:
        return {ipaddress.IPv4Address(ip) for ip in self.state["Allocations"].values()}

    def allocate(self, owner: str, wanted: str = "") -> str:
        """An address for ``owner`` (the same one again if it already has one)."""
        with self.lock:
            allocations: dict[str, str] = self.state["Allocations"]
            if owner in allocations and (not wanted or allocations[owner] == wanted):
                return allocations[owner]
            taken = self._taken() | {self.gateway}
            if wanted:
                try:
                    ip = ipaddress.IPv4Address(wanted)
                except ValueError as e:
                    raise InvalidArgument(f"invalid IPv4 address {wanted!r}") from e
                if ip not in self.subnet or ip in (self.subnet.network_address,
                                                   self.subnet.broadcast_address):
                    raise InvalidArgument(f"address {ip} is not usable in {self.subnet}")
                if ip in taken:
                    raise AlreadyExists(f"Address already in use: {ip}")
            else:
                ip = self._next(taken)
            allocations[owner] = str(ip)
            self.state["Last"] = str(ip)
            self._save()
            return str(ip)

    def _next(self, taken: set[ipaddress.IPv4Address]) -> ipaddress.IPv4Address:
        first = int(self.range.network_address) + 1
        last = int(self.range.broadcast_address) - 1
        start = int(ipaddress.IPv4Address(self.state["Last"])) + 1 if self.state["Last"] \
            else first
        if not first <= start <= last:
            start = first
        for n in (*range(start, last + 1), *range(first, start)):
            ip = ipaddress.IPv4Address(n)
            if ip not in taken and ip not in (self.subnet.network_address,
                                              self.subnet.broadcast_address):
                return ip
        raise FailedPrecondition(f"no available IPv4 addresses on this network's "
                                 f"address pools: {self.range}")

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
