"""Bridge networks: a Linux bridge, its IPAM pool, and a veth pair per container whose
far end lives in the container's network namespace.

    host                                   container netns (pinned at <exec-root>/netns/<id>)
    matou0 172.18.0.1/16 ── vethXXXXXXX ═══ eth0 172.18.0.2/16, default via 172.18.0.1
       │  (fd..::1/64 with IPv6)              (fd..::2/64, default via fd..::1)
       │                                   lo up
       └─ FORWARD / NAT rules: matou.network.firewall

May import: network, linux, errors.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
from typing import NamedTuple

from matou.errors import FailedPrecondition
from matou.linux import netfilter, netlink, netns
from matou.network.firewall import Firewall, Link, Rule
from matou.network.ipam import Pool, mac_for
from matou.network.ports import Allocator, PortMap, Request

log = logging.getLogger("matou.network")

# Docker's default address pools, in its order: the first one free on this host is taken
CANDIDATES = [f"172.{n}.0.0/16" for n in range(17, 32)] + \
    [f"192.168.{n}.0/20" for n in range(0, 256, 16)]


class Attachment(NamedTuple):
    network: str          # network id
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    host_if: str
    ports: tuple[PortMap, ...]
    ip6: str = ""         # with IPv6 on the network
    prefixlen6: int = 0
    gateway6: str = ""


def free_subnet(taken: list[ipaddress.IPv4Network], own: str = "") -> str:
    for c in ([own] if own else []) + CANDIDATES:
        net = ipaddress.IPv4Network(c)
        if not any(net.overlaps(t) for t in taken):
            return c
    raise FailedPrecondition("could not find a free address pool for the bridge network "
                             "(all of Docker's default pools overlap routes on this host)")


class Rules:
    """Applies firewall rule text with iptables; one per daemon."""

    def __init__(self, fw: Firewall) -> None:
        self.fw = fw

    def install(self, links: list[Link], ports: list[tuple[str, PortMap]],
                ports6: list[tuple[str, PortMap]] | None = None) -> None:
        rules = self.fw.forward_rules(links)
        rules += [r for ip, m in ports for r in self.fw.port_rules(ip, m)]
        netfilter.restore(self.fw.batch(rules, declare=True))
        for j in self.fw.jumps():
            if not netfilter.run("-t", j.table, "-C", j.chain, *j.spec.split()):
                netfilter.run("-t", j.table, "-I", j.chain, "1", *j.spec.split())
        # ip6tables only while a network has IPv6
        if not netfilter.available(v6=True):
            return
        if any(link.subnet6 for link in links):
            rules6 = self.fw.forward_rules(links, v6=True)
            rules6 += [r for ip, m in ports6 or [] for r in self.fw.port_rules(ip, m, v6=True)]
            netfilter.restore(self.fw.batch(rules6, declare=True, v6=True), v6=True)
            for j in self.fw.jumps(v6=True):
                if not netfilter.run("-t", j.table, "-C", j.chain, *j.spec.split(), v6=True):
                    netfilter.run("-t", j.table, "-I", j.chain, "1", *j.spec.split(),
                                  v6=True)
        elif self.fw.fwd in netfilter.chains("filter", v6=True):
            self._remove(v6=True)

    def add(self, rules: list[Rule], v6: bool = False) -> None:
        if rules:
            netfilter.restore(self.fw.batch(rules, v6=v6), v6=v6)

    def delete(self, rules: list[Rule], v6: bool = False) -> None:
        for r in rules:
            netfilter.run("-t", r.table, "-D", r.chain, *r.spec.split(), v6=v6)

    def remove_all(self) -> None:
        self._remove(v6=False)
        if netfilter.available(v6=True):
            self._remove(v6=True)

    def _remove(self, v6: bool) -> None:
        for j in self.fw.jumps(v6):
            while netfilter.run("-t", j.table, "-D", j.chain, *j.spec.split(), v6=v6):
                pass
        for table, chain in self.fw.chains(v6):
            netfilter.run("-t", table, "-F", chain, v6=v6)
            netfilter.run("-t", table, "-X", chain, v6=v6)


class BridgeNetwork:
    def __init__(self, ident: str, name: str, bridge: str, state_dir: str, subnet: str,
                 gateway: str = "", mtu: int = 1500, internal: bool = False,
                 ip_range: str = "", subnet6: str = "", gateway6: str = "",
                 ip_range6: str = "") -> None:
        self.id = ident
        self.name = name
        self.bridge = bridge
        self.mtu = mtu
        self.internal = internal
        self.pool = Pool(os.path.join(state_dir, f"{ident}.json"), subnet, gateway, ip_range)
        # IPv6 (EnableIPv6): a second pool, addresses beside the IPv4 ones
        self.pool6 = Pool(os.path.join(state_dir, f"{ident}-v6.json"), subnet6, gateway6,
                          ip_range6) if subnet6 else None
        if self.pool6 is not None and self.pool6.version != 6:
            raise FailedPrecondition(f"{subnet6} is not an IPv6 subnet")

    @property
    def subnet(self) -> str:
        return str(self.pool.subnet)

    @property
    def gateway(self) -> str:
        return str(self.pool.gateway)

    def link(self) -> Link:
        return Link(self.bridge, self.subnet, self.internal,
                    str(self.pool6.subnet) if self.pool6 is not None else "")

    def setup(self) -> None:
        six = self.pool6
        netlink.ensure_bridge(self.bridge, self.gateway, self.pool.prefixlen, self.mtu,
                              str(six.gateway) if six else "", six.prefixlen if six else 0)
        # the loopback path: 127.0.0.1:PORT DNATed out of this bridge must not be martian
        netfilter.sysctl(f"net.ipv4.conf.{self.bridge}.route_localnet", "1")

    def teardown(self) -> None:
        netlink.delete_link(self.bridge)

    def attach(self, owner: str, netns_path: str, rules: Rules, ports: Allocator,
               wanted: list[Request], ip: str = "", ifname: str = "eth0",
               default_route: bool = True, mac: str = "", ip6: str = "") -> Attachment:
        """``owner``'s interface ``ifname`` on this bridge, inside its namespace; the
        published ``wanted`` ports lead to it."""
        addr = self.pool.allocate(owner, ip)
        six = self.pool6
        try:
            addr6 = six.allocate(owner, ip6) if six is not None else ""
        except BaseException:
            self.pool.release(owner)
            raise
        mac = mac.lower() or mac_for(addr)
        host_if = "veth" + hashlib.sha256(f"{owner}:{self.id}".encode()).hexdigest()[:7]
        maps: list[PortMap] = []
        try:
            netlink.delete_link(host_if)  # a leftover of a crash between attach and detach
            routed = default_route and not self.internal
            gateway = self.gateway if routed else ""
            gateway6 = str(six.gateway) if six is not None and routed else ""
            netlink.add_veth(host_if, self.bridge, netns_path, netlink.Endpoint(
                ifname, addr, self.pool.prefixlen, gateway, mac, self.mtu, addr6,
                six.prefixlen if six is not None else 0, gateway6))
            if wanted:
                maps = ports.allocate(owner, wanted)
                rules.add([r for m in maps for r in rules.fw.port_rules(addr, m)])
                if addr6:
                    rules.add([r for m in maps for r in rules.fw.port_rules(addr6, m, True)],
                              v6=True)
        except BaseException:
            if maps:
                ports.release(owner)
            netlink.delete_link(host_if)
            self.pool.release(owner)
            if six is not None:
                six.release(owner)
            raise
        return Attachment(self.id, addr, self.pool.prefixlen, self.gateway, mac, host_if,
                          tuple(maps), addr6, six.prefixlen if six is not None else 0,
                          str(six.gateway) if six is not None else "")

    def detach(self, owner: str, att: Attachment, rules: Rules, ports: Allocator,
               unplug: bool = False) -> None:
        """Rules, ports and address go. The veth pair goes with the container's namespace
        (deleting it costs ~20 ms of the kernel's RCU wait): ``unplug`` only for a
        container that keeps running (docker network disconnect)."""
        if att.ports:
            rules.delete([r for m in att.ports for r in rules.fw.port_rules(att.ip, m)])
            if att.ip6:
                rules.delete([r for m in att.ports
                              for r in rules.fw.port_rules(att.ip6, m, True)], v6=True)
            ports.release(owner)
        if unplug:
            netlink.delete_link(att.host_if)
        self.pool.release(owner)
        if self.pool6 is not None:
            self.pool6.release(owner)


def new_sandbox(path: str) -> None:
    if os.path.exists(path):
        netns.remove(path)
    netns.create(path)


def remove_sandbox(path: str) -> None:
    netns.remove(path)
