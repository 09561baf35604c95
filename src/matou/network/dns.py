"""The embedded DNS server of user-defined networks, answering at 127.0.0.11:53 inside each
container, as Docker's does.

The daemon opens a UDP and a TCP socket bound to 127.0.0.11:53 *inside* the container's
network namespace (a thread enters it, creates the sockets, leaves; a socket keeps the
namespace it was made in) and serves them from its own event loop: no process, no port
redirection, nothing in the container. Names matou knows (containers, aliases, services
on the networks the asking container shares) are answered from ``lookup``; any other
name goes to the host's resolvers, from the host's namespace.

May import: linux, errors.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from matou.linux import netns

if TYPE_CHECKING:
    import dns.message
    import dns.rcode

log = logging.getLogger("matou.dns")

ADDRESS = "127.0.0.11"
TTL = 600

# (asking container id, lower-case name without the trailing dot) → IPv4 addresses, or
# None when the name is not one of ours
Lookup = Callable[[str, str], list[str] | None]


def host_resolvers(path: str = "/etc/resolv.conf") -> list[str]:
    out: list[str] = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    out.append(parts[1])
    except OSError:
        pass
    return out


def _open_sockets() -> tuple[socket.socket, socket.socket]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((ADDRESS, 53))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((ADDRESS, 53))
        tcp.listen(64)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    udp.setblocking(False)
    tcp.setblocking(False)
    return udp, tcp


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: Server, owner: str) -> None:
        self.server = server
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.ensure_future(self._answer(data, addr))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = await self.server.answer(self.owner, data, tcp=False)
        if reply and self.transport is not None:
            self.transport.sendto(reply, addr)


class Server:
    """Every container's 127.0.0.11, served from one event loop."""

    def __init__(self, lookup: Lookup, upstream: list[str] | None = None) -> None:
        self.lookup = lookup
        self.upstream = upstream if upstream is not None else host_resolvers()
        self.endpoints: dict[str, tuple[asyncio.BaseTransport, asyncio.Server]] = {}
        self.tasks: set[asyncio.Future[None]] = set()

    async def serve(self, owner: str, netns_path: str) -> None:
        """Answer at 127.0.0.11:53 in the namespace at ``netns_path`` for ``owner``."""
        if owner in self.endpoints:
            return
        udp, tcp = await asyncio.to_thread(netns.run_in, netns_path, _open_sockets)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self, owner),
                                                           sock=udp)

        async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    size = struct.unpack(">H", await reader.readexactly(2))[0]
                    reply = await self.answer(owner, await reader.readexactly(size), tcp=True)
                    if not reply:
                        break
                    writer.write(struct.pack(">H", len(reply)) + reply)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(stream, sock=tcp)
        self.endpoints[owner] = (transport, server)

    def stop(self, owner: str) -> None:
        ep = self.endpoints.pop(owner, None)
        if ep is not None:
            ep[0].close()
            ep[1].close()

    def stop_all(self) -> None:
        for owner in list(self.endpoints):
            self.stop(owner)

    async def answer(self, owner: str, data: bytes, tcp: bool) -> bytes | None:
        # dnspython only once a container asks: a daemon without user networks never does
        import dns.flags
        import dns.message
        import dns.rcode
        import dns.rdataclass
        import dns.rdatatype
        import dns.rrset

        try:
            query = dns.message.from_wire(data)
        except Exception:
            return None  # not DNS: no answer, as a resolver does
        if len(query.question) != 1:
            return _reply(query, dns.rcode.FORMERR)
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        ips = self.lookup(owner, name) if q.rdclass == dns.rdataclass.IN else None
        if ips is None:
            forwarded = await self._forward(data, tcp)
            return forwarded if forwarded is not None else _reply(query, dns.rcode.SERVFAIL)
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.RA
        v4 = [ip for ip in ips if ":" not in ip]
        v6 = [ip for ip in ips if ":" in ip]
        if q.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY) and v4:
            reply.answer.append(dns.rrset.from_text_list(q.name, TTL, "IN", "A", v4))
        if q.rdtype in (dns.rdatatype.AAAA, dns.rdatatype.ANY) and v6:
            reply.answer.append(dns.rrset.from_text_list(q.name, TTL, "IN", "AAAA", v6))
        return bytes(reply.to_wire())

    async def _forward(self, data: bytes, tcp: bool) -> bytes | None:
        for server in self.upstream:
            try:
                return await asyncio.wait_for(_ask(server, data, tcp), 3)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                continue
        return None


def _reply(query: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    import dns.message

    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    return bytes(reply.to_wire())


async def _ask(server: str, data: bytes, tcp: bool) -> bytes:
    loop = asyncio.get_running_loop()
    if tcp:
        reader, writer = await asyncio.open_connection(server, 53)
        try:
            writer.write(struct.pack(">H", len(data)) + data)
            await writer.drain()
            size = struct.unpack(">H", await reader.readexactly(2))[0]
            return await reader.readexactly(size)
        finally:
            writer.close()
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        await loop.sock_connect(s, (server, 53))
        await loop.sock_sendall(s, data)
        return await loop.sock_recv(s, 65535)
