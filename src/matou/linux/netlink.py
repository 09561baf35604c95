"""Links, addresses and routes by rtnetlink, through pyroute2 — bridges, veth pairs, and the
configuration of a container's end inside its network namespace.

pyroute2 opens one netlink socket per thread, in the namespace the thread is in when it
first talks: every function here opens its own ``IPRoute`` and closes it, so it works the
same from any thread, including one that has entered a container's namespace
(:func:`matou.linux.netns.run_in`).
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any, NamedTuple

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from matou.errors import SystemError_
from matou.linux import netns


class Endpoint(NamedTuple):
    """A container's interface as it is set up inside its namespace."""
    ifname: str               # name inside the container, eth0
    address: str              # 172.17.0.2
    prefixlen: int            # 16
    gateway: str              # 172.17.0.1 ("" for none: an internal network)
    mac: str                  # 02:42:ac:11:00:02
    mtu: int
    address6: str = ""        # fd12:3456::2 on a network with IPv6
    prefixlen6: int = 0
    gateway6: str = ""


IFA_F_NODAD = 0x02  # no duplicate address detection: the address works at once


def _fail(what: str, operand: str, e: NetlinkError) -> SystemError_:
    return SystemError_(what, operand, e.code or 5)


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def exists(name: str) -> bool:
    with IPRoute() as ipr:
        return _index(ipr, name) is not None


def ensure_bridge(name: str, gateway: str, prefixlen: int, mtu: int = 1500,
                  gateway6: str = "", prefixlen6: int = 0) -> None:
    """A bridge ``name`` with ``gateway/prefixlen`` (and ``gateway6/prefixlen6``) on it,
    up; created when missing, left alone (but addressed and up) when it is there."""
    with IPRoute() as ipr:
        try:
            idx = _index(ipr, name)
            if idx is None:
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
                idx = _index(ipr, name)
            assert idx is not None
            have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                    for a in ipr.get_addr(index=idx)}
            if (gateway, prefixlen) not in have:
                ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
            want6 = (str(ipaddress.IPv6Address(gateway6)), prefixlen6) if gateway6 else None
            for a in ipr.get_addr(index=idx, family=10):  # a former IPv6 subnet goes
                here = (a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                if a["scope"] == 0 and here != want6:
                    ipr.addr("del", index=idx, address=here[0], prefixlen=here[1])
            if want6 is not None:
                _ipv6_on(name)
                if want6 not in have:
                    ipr.addr("add", index=idx, address=gateway6, prefixlen=prefixlen6,
                             IFA_FLAGS=IFA_F_NODAD)
            ipr.link("set", index=idx, state="up")
        except NetlinkError as e:
            raise _fail("set up bridge", name, e) from e


def _ipv6_on(ifname: str) -> None:
    """IPv6 enabled on a link of the current namespace (a host may disable it by default)."""
    path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    if os.path.exists(path):
        with open(path, "w") as f:
            f.write("0")


def delete_link(name: str) -> bool:
    """Delete a link by name; False when there was none."""
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except NetlinkError as e:
            if e.code == 19:  # ENODEV: went meanwhile
                return False
            raise _fail("delete link", name, e) from e
        return True


def routed_networks(besides: str = "") -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host reaches directly or has an address in — the ranges a
    new bridge must not overlap — except those of the link ``besides`` (our own bridge)."""
    out: list[ipaddress.IPv4Network] = []
    with IPRoute() as ipr:
        own = _index(ipr, besides) if besides else None
        for r in ipr.get_routes(family=2):
            dst = r.get_attr("RTA_DST")
            if dst and r["dst_len"] > 0 and (own is None or r.get_attr("RTA_OIF") != own):
                out.append(ipaddress.IPv4Network(f"{dst}/{r['dst_len']}", strict=False))
        for a in ipr.get_addr(family=2):
            if own is not None and a["index"] == own:
                continue
            out.append(ipaddress.IPv4Network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}",
                                             strict=False))
    return out


def add_veth(host_name: str, bridge: str, netns_path: str, ep: Endpoint) -> None:
    """A veth pair: ``host_name`` on ``bridge`` in the host, its peer made directly inside
    the namespace at ``netns_path`` (moving a link between namespaces costs an RCU grace
    period, ~25 ms) and set up there as ``ep``, with lo up and a default route through the
    gateway. The pair goes by itself when the namespace does."""
    with IPRoute() as ipr:
        try:
            br = _index(ipr, bridge)
            if br is None:
                raise SystemError_("attach to bridge", bridge, 19)
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link("add", ifname=host_name, kind="veth", mtu=ep.mtu,
                         peer={"ifname": ep.ifname, "mtu": ep.mtu, "net_ns_fd": fd})
            finally:
                os.close(fd)
            idx = _index(ipr, host_name)
            assert idx is not None
            ipr.link("set", index=idx, master=br, state="up")
        except NetlinkError as e:
            _cleanup(ipr, host_name)
            raise _fail("add veth", host_name, e) from e
        except BaseException:
            _cleanup(ipr, host_name)
            raise
    try:
        netns.run_in(netns_path, lambda: _configure(ep))
    except BaseException:
        delete_link(host_name)
        raise


def _cleanup(ipr: Any, name: str) -> None:
    idx = _index(ipr, name)
    if idx is not None:
        try:
            ipr.link("del", index=idx)
        except NetlinkError:
            pass


def _configure(ep: Endpoint) -> None:
    with IPRoute() as ipr:
        try:
            lo = _index(ipr, "lo")
            if lo is not None:
                ipr.link("set", index=lo, state="up")
            idx = _index(ipr, ep.ifname)
            if idx is None:
                raise SystemError_("find veth peer", ep.ifname, 19)
            ipr.link("set", index=idx, address=ep.mac)
            ipr.addr("add", index=idx, address=ep.address, prefixlen=ep.prefixlen)
            if ep.address6:
                _ipv6_on(ep.ifname)
                ipr.addr("add", index=idx, address=ep.address6, prefixlen=ep.prefixlen6,
                         IFA_FLAGS=IFA_F_NODAD)
            ipr.link("set", index=idx, state="up")
            if ep.gateway:
                ipr.route("add", dst="0.0.0.0/0", gateway=ep.gateway)
            if ep.gateway6:
                ipr.route("add", dst="::/0", gateway=ep.gateway6, family=10)
        except NetlinkError as e:
            raise _fail("configure interface", ep.ifname, e) from e
