"""The netfilter rules matou owns, as text: its own chains, jumped to from the built-in
ones, so that its rules come first, are found again by name, and go without a trace.

    filter FORWARD      -j P-FWD          (inserted first: works under a DROP policy, as
                                           ufw and Docker itself leave FORWARD)
    nat    PREROUTING   -m addrtype --dst-type LOCAL -j P        published ports
    nat    OUTPUT       -m addrtype --dst-type LOCAL -j P        … from the host, 127.0.0.1 too
    nat    POSTROUTING  -j P-POST         masquerade out, loopback path, hairpin

``P`` is MATOU for the default bridge matou0, else derived from the bridge name, so that
two daemons on one host (tests, peers) never touch each other's rules. Networks with IPv6
get the same chains in ip6tables: forwarding, masquerading, and the ports published to
containers that have an IPv6 address.

May import: network, errors.
"""

from __future__ import annotations

from typing import NamedTuple

from matou.network.ports import PortMap


class Link(NamedTuple):
    bridge: str
    subnet: str
    internal: bool = False
    subnet6: str = ""   # with IPv6 on the network


class Rule(NamedTuple):
    table: str
    chain: str
    spec: str


class Firewall:
    def __init__(self, bridge: str) -> None:
        self.prefix = "MATOU" if bridge == "matou0" else "MATOU-" + bridge.upper()[:15]
        self.dnat = self.prefix
        self.fwd = self.prefix + "-FWD"
        self.post = self.prefix + "-POST"

    def jumps(self, v6: bool = False) -> list[Rule]:
        return [Rule("filter", "FORWARD", f"-j {self.fwd}"),
                Rule("nat", "PREROUTING", f"-m addrtype --dst-type LOCAL -j {self.dnat}"),
                Rule("nat", "OUTPUT", f"-m addrtype --dst-type LOCAL -j {self.dnat}"),
                Rule("nat", "POSTROUTING", f"-j {self.post}")]

    def chains(self, v6: bool = False) -> list[tuple[str, str]]:
        return [("filter", self.fwd), ("nat", self.dnat), ("nat", self.post)]

    def link_rules(self, link: Link, v6: bool = False) -> list[Rule]:
        br = link.bridge
        subnet = link.subnet6 if v6 else link.subnet
        rules = [Rule("filter", self.fwd,
                      f"-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
                 Rule("filter", self.fwd, f"-o {br} -m conntrack --ctstate DNAT -j ACCEPT"),
                 Rule("filter", self.fwd, f"-i {br} -o {br} -j ACCEPT")]
        if not link.internal:
            rules += [Rule("filter", self.fwd, f"-i {br} ! -o {br} -j ACCEPT"),
                      Rule("nat", self.post, f"-s {subnet} ! -o {br} -j MASQUERADE"),
                      Rule("nat", self.post, f"-o {br} -m addrtype --src-type LOCAL "
                                             "-j MASQUERADE")]
        return rules

    def forward_rules(self, links: list[Link], v6: bool = False) -> list[Rule]:
        """Isolation first — no bridge of ours forwards to another, an internal one to
        nowhere — then each bridge's accepts (``v6``: of the bridges with IPv6)."""
        if v6:
            links = [link for link in links if link.subnet6]
        drops: list[Rule] = []
        for a in links:
            drops += [Rule("filter", self.fwd, f"-i {a.bridge} -o {b.bridge} -j DROP")
                      for b in links if b.bridge != a.bridge]
            if a.internal:
                drops += [Rule("filter", self.fwd, f"-i {a.bridge} ! -o {a.bridge} -j DROP"),
                          Rule("filter", self.fwd, f"-o {a.bridge} ! -i {a.bridge} -j DROP")]
        return drops + [r for link in links for r in self.link_rules(link, v6)]

    def port_rules(self, ip: str, m: PortMap, v6: bool = False) -> list[Rule]:
        """A published port to the container's ``ip`` (IPv6 with ``v6``). A port on every
        address (0.0.0.0) is published on both families; one on a given host address only
        on that address's family."""
        any_host = m.host_ip in ("", "0.0.0.0", "::")
        if not any_host and (":" in m.host_ip) != v6:
            return []
        if v6:
            dst = "" if any_host else f"-d {m.host_ip}/128 "
            to, me = f"[{ip}]:{m.container_port}", f"{ip}/128"
        else:
            if m.host_ip == "::":
                return []
            dst = "" if any_host else f"-d {m.host_ip}/32 "
            to, me = f"{ip}:{m.container_port}", f"{ip}/32"
        return [Rule("nat", self.dnat, f"{dst}-p {m.proto} -m {m.proto} --dport {m.host_port} "
                                       f"-j DNAT --to-destination {to}"),
                Rule("nat", self.post, f"-s {me} -d {me} -p {m.proto} -m {m.proto} "
                                       f"--dport {m.container_port} -j MASQUERADE")]

    def batch(self, rules: list[Rule], declare: bool = False, v6: bool = False) -> str:
        """An iptables-restore batch appending ``rules``; with ``declare``, our chains are
        created (or flushed) first."""
        out: list[str] = []
        for table in ("filter", "nat"):
            lines = [f":{c} - [0:0]" for t, c in self.chains(v6) if declare and t == table]
            lines += [f"-A {r.chain} {r.spec}" for r in rules if r.table == table]
            if lines:
                out += [f"*{table}", *lines, "COMMIT"]
        return "\n".join(out) + "\n"
