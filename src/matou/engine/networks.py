"""Docker's networking for containers: the predefined ``bridge``, ``host`` and ``none``
networks, a network namespace per container (its "sandbox"), and what inspect and ps
show of it (NetworkSettings, Ports).

    <data-root>/network/networks.json    {"bridge": {"Id", "Subnet", "Gateway", "Bridge"}}
    <data-root>/network/<id>.json        the network's IPAM (matou.network.ipam)
    <exec-root>/netns/<container-id>     the sandbox: an nsfs bind mount

A sandbox outlives the daemon (live restore) and goes when its container stops.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import uuid
from typing import TYPE_CHECKING, Any

from matou.errors import FailedPrecondition, NotFound
from matou.linux import jsonfile, netfilter, netlink
from matou.network import bridge as bridges
from matou.network.firewall import Firewall
from matou.network.ports import Allocator, PortMap, docker_ports, from_docker, requests

if TYPE_CHECKING:
    from matou.engine.containers import Container

log = logging.getLogger("matou.network")

_EMPTY_ENDPOINT = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "",
                   "DriverOpts": None, "NetworkID": "", "EndpointID": "", "Gateway": "",
                   "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                   "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


def empty_settings() -> dict[str, Any]:
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": {}}


def mode_of(c: Container) -> str:
    mode = str(c.r["HostConfig"].get("NetworkMode") or "default")
    return "bridge" if mode == "default" else mode


class NetworkService:
    def __init__(self, data_root: str, exec_root: str, bridge: str = "matou0",
                 bip: str = "") -> None:
        self.dir = os.path.join(data_root, "network")
        self.sandboxes = os.path.join(exec_root, "netns")
        for d in (self.dir, self.sandboxes):
            os.makedirs(d, 0o700, exist_ok=True)
        self.bridge_name = bridge
        self.bip = bip
        self.ports = Allocator()
        self.rules = bridges.Rules(Firewall(bridge))
        self.ids = jsonfile.read(os.path.join(self.dir, "networks.json"), dict)
        for name in ("bridge", "host", "none"):
            self.ids.setdefault(name, {}).setdefault("Id", uuid.uuid4().hex + uuid.uuid4().hex)
        self.default: bridges.BridgeNetwork | None = None
        self.ready = False

    def _save(self) -> None:
        jsonfile.write_atomic(os.path.join(self.dir, "networks.json"), self.ids)

    # -- daemon start and stop ---------------------------------------------------------------

    async def setup(self, running: list[Container]) -> None:
        """The default bridge and matou's rules, with the ports of containers that are
        still running from before (live restore)."""
        if self.bridge_name == "none":
            self._save()
            return
        if not netfilter.available():
            log.warning("iptables not found: containers get no bridge network")
            return
        await asyncio.to_thread(self._setup_bridge)
        ports: list[tuple[str, PortMap]] = []
        for c in running:
            att = c.r.get("MatouNet")
            if att:
                maps = from_docker(att.get("Ports"))
                self.ports.claim(c.id, maps)
                ports += [(att["IP"], m) for m in maps]
        assert self.default is not None
        await asyncio.to_thread(self.rules.install, [self.default.link()], ports)
        netfilter.sysctl("net.ipv4.ip_forward", "1")
        self.ready = True

    def _setup_bridge(self) -> None:
        rec = self.ids["bridge"]
        subnet = self.bip
        gateway = ""
        if subnet:
            iface = ipaddress.IPv4Interface(subnet)
            subnet, gateway = str(iface.network), str(iface.ip)
        else:
            taken = netlink.routed_networks(besides=self.bridge_name)
            subnet = bridges.free_subnet(taken, rec.get("Subnet", ""))
            if rec.get("Subnet") == subnet:
                gateway = rec.get("Gateway", "")
        net = bridges.BridgeNetwork(rec["Id"], "bridge", self.bridge_name, self.dir, subnet,
                                    gateway)
        net.setup()
        rec.update({"Subnet": net.subnet, "Gateway": net.gateway, "Bridge": self.bridge_name})
        self._save()
        self.default = net

    async def shutdown(self, any_running: bool) -> None:
        """Containers still running keep their network (live restore); with none left,
        matou's rules and bridge go."""
        if not self.ready or any_running:
            return
        await asyncio.to_thread(self.rules.remove_all)
        if self.default is not None:
            await asyncio.to_thread(self.default.teardown)
        self.ready = False

    # -- containers ----------------------------------------------------------------------------

    def sandbox_path(self, c: Container) -> str:
        return os.path.join(self.sandboxes, c.id)

    def check(self, host: dict[str, Any]) -> None:
        """Refuse at create what start could not do."""
        mode = str(host.get("NetworkMode") or "default")
        if mode in ("default", "bridge", "host", "none") or mode.startswith("container:"):
            return
        raise NotFound(f"network {mode} not found")

    async def connect(self, c: Container, lookup: Any) -> str | None:
        """Before the container starts: its namespace's path for the spec, or None to let
        the runtime make one (none) or use the host's (host)."""
        mode = mode_of(c)
        settings = empty_settings()
        c.r["NetworkSettings"] = settings
        c.r.pop("MatouNet", None)
        if mode in ("host", "none"):
            settings["Networks"] = {mode: {**_EMPTY_ENDPOINT,
                                           "NetworkID": self.ids[mode]["Id"]}}
            return None
        if mode.startswith("container:"):
            other = lookup(mode.split(":", 1)[1])
            if not other.running:
                raise FailedPrecondition(f"cannot join network of a non running container: "
                                         f"{other.id}")
            path = self.sandbox_path(other)
            return path if os.path.exists(path) else f"/proc/{other.state['Pid']}/ns/net"
        if self.default is None or not self.ready:
            raise FailedPrecondition("the default bridge network is not available "
                                     "(see the daemon's log)")
        config = c.r["Config"]
        wanted = requests(c.r["HostConfig"].get("PortBindings"),
                          (config.get("ExposedPorts") or {}).keys(),
                          bool(c.r["HostConfig"].get("PublishAllPorts")))
        path = self.sandbox_path(c)
        net = self.default
        await asyncio.to_thread(bridges.new_sandbox, path)
        try:
            att = await asyncio.to_thread(net.attach, c.id, path, self.rules, self.ports,
                                          wanted)
        except BaseException:
            await asyncio.to_thread(bridges.remove_sandbox, path)
            raise
        endpoint = uuid.uuid4().hex + uuid.uuid4().hex
        ports = docker_ports(att.ports, (config.get("ExposedPorts") or {}).keys())
        c.r["MatouNet"] = {"IP": att.ip, "HostIf": att.host_if, "Ports": ports}
        settings.update({"SandboxID": uuid.uuid4().hex + uuid.uuid4().hex, "SandboxKey": path,
                         "Ports": ports, "EndpointID": endpoint, "Gateway": att.gateway,
                         "IPAddress": att.ip, "IPPrefixLen": att.prefixlen,
                         "MacAddress": att.mac})
        settings["Networks"] = {"bridge": {
            **_EMPTY_ENDPOINT, "MacAddress": att.mac, "NetworkID": net.id,
            "EndpointID": endpoint, "Gateway": att.gateway, "IPAddress": att.ip,
            "IPPrefixLen": att.prefixlen}}
        return path

    async def disconnect(self, c: Container) -> None:
        """After the container stopped: its veth, address, ports and sandbox go."""
        att = c.r.pop("MatouNet", None)
        settings = c.r.get("NetworkSettings") or empty_settings()
        if att and self.default is not None:
            a = bridges.Attachment(self.default.id, att["IP"], 0, "", "", att["HostIf"],
                                   tuple(from_docker(att.get("Ports"))))
            try:
                await asyncio.to_thread(self.default.detach, c.id, a, self.rules, self.ports)
            except Exception as e:
                log.warning("detach %s from bridge: %s", c.id[:12], e)
        path = self.sandbox_path(c)
        if os.path.exists(path):
            await asyncio.to_thread(bridges.remove_sandbox, path)
        for ep in (settings.get("Networks") or {}).values():
            ep.update({"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                       "MacAddress": ""})
        settings.update({"SandboxID": "", "SandboxKey": "", "Ports": {}, "EndpointID": "",
                         "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": ""})

    # -- what the API shows --------------------------------------------------------------------

    def summary_ports(self, c: Container) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        ports = (c.r.get("NetworkSettings") or {}).get("Ports") or {}
        if not c.running:
            ports = {k: None for k in (c.r["Config"].get("ExposedPorts") or {})}
        for key, hosts in ports.items():
            port, _, proto = key.partition("/")
            if not hosts:
                out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
            for h in hosts or []:
                out.append({"IP": h["HostIp"], "PrivatePort": int(port),
                            "PublicPort": int(h["HostPort"]), "Type": proto or "tcp"})
        return out

    def hosts_entry(self, c: Container) -> str:
        att = c.r.get("MatouNet")
        return att["IP"] if att else ""

