"""Links, addresses and routes by rtnetlink — bridges, veth pairs, and the configuration of
a container's end inside its network namespace.

The messages are packed here, on a plain AF_NETLINK socket: the dozen requests matou makes
(a link by name, a bridge, a veth pair with its peer made inside a namespace, addresses,
routes, two dumps) are a few structs each. pyroute2, which did this before, imports every
netlink family it knows when imported — ~9 MiB of the daemon's resident memory and ~85 ms
of its start-up.

Each call opens its own socket: a socket belongs to the network namespace its thread is in
when it is made, so the same functions work from a thread that has entered a container's
namespace (:func:`matou.linux.netns.run_in`).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from typing import NamedTuple

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

# <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>, <linux/veth.h>
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK = 16, 17, 18
_RTM_NEWADDR, _RTM_DELADDR, _RTM_GETADDR = 20, 21, 22
_RTM_NEWROUTE, _RTM_GETROUTE = 24, 26
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_F_REQUEST, _F_ACK, _F_DUMP = 0x1, 0x4, 0x300
_F_EXCL, _F_CREATE = 0x200, 0x400
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_MASTER, _IFLA_LINKINFO = 1, 3, 4, 10, 18
_IFLA_NET_NS_FD = 28
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_IFA_ADDRESS, _IFA_LOCAL, _IFA_FLAGS = 1, 2, 8
_RTA_DST, _RTA_OIF, _RTA_GATEWAY = 1, 4, 5
_IFF_UP = 0x1
_IFINFO = struct.Struct("=BxHiII")       # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")        # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")     # family, dst_len, src_len, tos, table, protocol,
#                                          scope, type, flags
_HDR = struct.Struct("=IHHII")           # length, type, flags, sequence, port


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def _attrs(data: bytes) -> dict[int, bytes]:
    out = {}
    while len(data) >= 4:
        length, kind = struct.unpack_from("=HH", data)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[4:length]
        data = data[(length + 3) & ~3:]
    return out


def _name(text: str) -> bytes:
    return text.encode() + b"\0"


def _u32(n: int) -> bytes:
    return struct.pack("=I", n)


def _ip(text: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(text)
    return (socket.AF_INET if ip.version == 4 else socket.AF_INET6), ip.packed


class _Netlink:
    """One rtnetlink socket of the calling thread's namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def __enter__(self) -> _Netlink:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def call(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one request; the messages it answers with (a dump's, or a get's one), or
        [] for an acknowledged change. An error answer raises OSError with its errno."""
        self.seq += 1
        self.sock.send(_HDR.pack(_HDR.size + len(body), kind, flags | _F_REQUEST, self.seq, 0)
                       + body)
        out: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 18)
            while len(data) >= _HDR.size:
                length, mtype, _, seq, _ = _HDR.unpack_from(data)
                payload, data = data[_HDR.size:length], data[(length + 3) & ~3:]
                if seq != self.seq:
                    continue
                if mtype == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return out
                if mtype == _NLMSG_DONE:
                    return out
                out.append((mtype, payload))
                if not flags & _F_DUMP and not flags & _F_ACK:
                    return out

    def index(self, name: str) -> int | None:
        try:
            found = self.call(_RTM_GETLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0) +
                              _attr(_IFLA_IFNAME, _name(name)))
        except OSError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        return int(_IFINFO.unpack_from(found[0][1])[2]) if found else None

    def set_link(self, index: int, up: bool = False, master: int = 0, mac: str = "") -> None:
        attrs = (_attr(_IFLA_MASTER, _u32(master)) if master else b"") + (
            _attr(_IFLA_ADDRESS, bytes.fromhex(mac.replace(":", ""))) if mac else b"")
        self.call(_RTM_NEWLINK, _F_ACK, _IFINFO.pack(0, 0, index, _IFF_UP if up else 0,
                                                     _IFF_UP if up else 0) + attrs)

    def addresses(self, family: int = 0, index: int = 0) -> list[tuple[str, int, int, int]]:
        """(address, prefix length, scope, link index) of every address (of ``index``)."""
        out = []
        for _, payload in self.call(_RTM_GETADDR, _F_DUMP,
                                    _IFADDR.pack(family, 0, 0, 0, 0)):
            fam, prefixlen, _, scope, idx = _IFADDR.unpack_from(payload)
            raw = _attrs(payload[_IFADDR.size:])
            addr = raw.get(_IFA_ADDRESS) or raw.get(_IFA_LOCAL)
            if addr is None or (index and idx != index) or fam not in (socket.AF_INET,
                                                                       socket.AF_INET6):
                continue
            out.append((socket.inet_ntop(fam, addr), prefixlen, scope, idx))
        return out

    def address(self, add: bool, index: int, text: str, prefixlen: int,
                flags: int = 0) -> None:
        family, packed = _ip(text)
        attrs = _attr(_IFA_ADDRESS, packed)
        if family == socket.AF_INET:
            attrs += _attr(_IFA_LOCAL, packed)
        if flags:
            attrs += _attr(_IFA_FLAGS, _u32(flags))
        self.call(_RTM_NEWADDR if add else _RTM_DELADDR,
                  _F_ACK | (_F_CREATE | _F_EXCL if add else 0),
                  _IFADDR.pack(family, prefixlen, flags & 0xFF, 0, index) + attrs)

    def default_route(self, gateway: str) -> None:
        family, packed = _ip(gateway)
        # main table, boot protocol, universe scope, unicast
        self.call(_RTM_NEWROUTE, _F_ACK | _F_CREATE | _F_EXCL,
                  _RTMSG.pack(family, 0, 0, 0, 254, 3, 0, 1, 0) + _attr(_RTA_GATEWAY, packed))

    def delete(self, index: int) -> None:
        self.call(_RTM_DELLINK, _F_ACK, _IFINFO.pack(0, 0, index, 0, 0))


def _fail(what: str, operand: str, e: OSError) -> SystemError_:
    return SystemError_(what, operand, e.errno or 5)


def exists(name: str) -> bool:
    with _Netlink() as nl:
        return nl.index(name) is not None


def ensure_bridge(name: str, gateway: str, prefixlen: int, mtu: int = 1500,
                  gateway6: str = "", prefixlen6: int = 0) -> None:
    """A bridge ``name`` with ``gateway/prefixlen`` (and ``gateway6/prefixlen6``) on it,
    up; created when missing, left alone (but addressed and up) when it is there."""
    with _Netlink() as nl:
        try:
            idx = nl.index(name)
            if idx is None:
                nl.call(_RTM_NEWLINK, _F_ACK | _F_CREATE | _F_EXCL,
                        _IFINFO.pack(0, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, _name(name)) +
                        _attr(_IFLA_MTU, _u32(mtu)) +
                        _attr(_IFLA_LINKINFO, _attr(_IFLA_INFO_KIND, b"bridge")))
                idx = nl.index(name)
            assert idx is not None
            have = {(a, p) for a, p, _, _ in nl.addresses(index=idx)}
            if (gateway, prefixlen) not in have:
                nl.address(True, idx, gateway, prefixlen)
            want6 = (str(ipaddress.IPv6Address(gateway6)), prefixlen6) if gateway6 else None
            for a, p, scope, _ in nl.addresses(socket.AF_INET6, idx):
                if scope == 0 and (a, p) != want6:  # a former IPv6 subnet goes
                    nl.address(False, idx, a, p)
            if want6 is not None:
                _ipv6_on(name)
                if want6 not in have:
                    nl.address(True, idx, gateway6, prefixlen6, IFA_F_NODAD)
            nl.set_link(idx, up=True)
        except OSError as e:
            raise _fail("set up bridge", name, e) from e


def _ipv6_on(ifname: str) -> None:
    """IPv6 enabled on a link of the current namespace (a host may disable it by default)."""
    path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    if os.path.exists(path):
        with open(path, "w") as f:
            f.write("0")


def delete_link(name: str) -> bool:
    """Delete a link by name; False when there was none."""
    with _Netlink() as nl:
        idx = nl.index(name)
        if idx is None:
            return False
        try:
            nl.delete(idx)
        except OSError as e:
            if e.errno == errno.ENODEV:  # went meanwhile
                return False
            raise _fail("delete link", name, e) from e
        return True


def routed_networks(besides: str = "") -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host reaches directly or has an address in — the ranges a
    new bridge must not overlap — except those of the link ``besides`` (our own bridge)."""
    out: list[ipaddress.IPv4Network] = []
    with _Netlink() as nl:
        own = nl.index(besides) if besides else None
        for _, payload in nl.call(_RTM_GETROUTE, _F_DUMP,
                                  _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)):
            dst_len = _RTMSG.unpack_from(payload)[1]
            raw = _attrs(payload[_RTMSG.size:])
            oif = struct.unpack("=I", raw[_RTA_OIF])[0] if _RTA_OIF in raw else None
            if _RTA_DST in raw and dst_len > 0 and (own is None or oif != own):
                out.append(ipaddress.IPv4Network(
                    (socket.inet_ntop(socket.AF_INET, raw[_RTA_DST]), dst_len), strict=False))
        for addr, prefixlen, _, idx in nl.addresses(socket.AF_INET):
            if own is None or idx != own:
                out.append(ipaddress.IPv4Network(f"{addr}/{prefixlen}", strict=False))
    return out


def add_veth(host_name: str, bridge: str, netns_path: str, ep: Endpoint) -> None:
    """A veth pair: ``host_name`` on ``bridge`` in the host, its peer made directly inside
    the namespace at ``netns_path`` (moving a link between namespaces costs an RCU grace
    period, ~25 ms) and set up there as ``ep``, with lo up and a default route through the
    gateway. The pair goes by itself when the namespace does."""
    with _Netlink() as nl:
        try:
            br = nl.index(bridge)
            if br is None:
                raise SystemError_("attach to bridge", bridge, errno.ENODEV)
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                peer = (_IFINFO.pack(0, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, _name(ep.ifname)) +
                        _attr(_IFLA_MTU, _u32(ep.mtu)) + _attr(_IFLA_NET_NS_FD, _u32(fd)))
                info = _attr(_IFLA_INFO_KIND, b"veth") + _attr(
                    _IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer))
                nl.call(_RTM_NEWLINK, _F_ACK | _F_CREATE | _F_EXCL,
                        _IFINFO.pack(0, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, _name(host_name)) +
                        _attr(_IFLA_MTU, _u32(ep.mtu)) + _attr(_IFLA_LINKINFO, info))
            finally:
                os.close(fd)
            idx = nl.index(host_name)
            assert idx is not None
            nl.set_link(idx, up=True, master=br)
        except OSError as e:
            _cleanup(nl, host_name)
            raise _fail("add veth", host_name, e) from e
        except BaseException:
            _cleanup(nl, host_name)
            raise
    try:
        netns.run_in(netns_path, lambda: _configure(ep))
    except BaseException:
        delete_link(host_name)
        raise


def _cleanup(nl: _Netlink, name: str) -> None:
    try:
        idx = nl.index(name)
        if idx is not None:
            nl.delete(idx)
    except OSError:
        pass


def _configure(ep: Endpoint) -> None:
    with _Netlink() as nl:
        try:
            lo = nl.index("lo")
            if lo is not None:
                nl.set_link(lo, up=True)
            idx = nl.index(ep.ifname)
            if idx is None:
                raise SystemError_("find veth peer", ep.ifname, errno.ENODEV)
            nl.set_link(idx, mac=ep.mac)
            nl.address(True, idx, ep.address, ep.prefixlen)
            if ep.address6:
                _ipv6_on(ep.ifname)
                nl.address(True, idx, ep.address6, ep.prefixlen6, IFA_F_NODAD)
            nl.set_link(idx, up=True)
            if ep.gateway:
                nl.default_route(ep.gateway)
            if ep.gateway6:
                nl.default_route(ep.gateway6)
        except OSError as e:
            raise _fail("configure interface", ep.ifname, e) from e
