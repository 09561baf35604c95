"""Docker's networks: the predefined ``bridge`` (matou0), ``host`` and ``none``, user-defined
bridge networks with their own subnet, isolation and embedded DNS, a network namespace per
container (its "sandbox") joined to each of its networks, and what inspect, ps and the
networks endpoints show of it all.

    <data-root>/network/networks.json    {"Networks": {id: Docker's network record + "MatouBridge"}}
    <data-root>/network/<id>.json        each bridge network's IPAM (matou.network.ipam)
    <exec-root>/netns/<container-id>     the sandbox: an nsfs bind mount

A container's endpoints live in its record: NetworkSettings.Networks (Docker's shape,
kept while it is stopped, with the addresses cleared) and MatouNet (what matou must undo:
addresses, host veth names, published ports). A sandbox outlives the daemon (live restore)
and goes when its container stops.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from matou.engine.events import EventBus
from matou.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from matou.linux import jsonfile, netfilter, netlink
from matou.network import bridge as bridges
from matou.network import dns
from matou.network.firewall import Firewall
from matou.network.ports import Allocator, PortMap, docker_ports, from_docker, requests
from matou.oci import timestamps

if TYPE_CHECKING:
    from matou.engine.containers import Container

log = logging.getLogger("matou.network")

PREDEFINED = ("bridge", "host", "none")
_BRIDGE_NAME = "com.docker.network.bridge.name"
_MTU = "com.docker.network.driver.mtu"

_EMPTY_ENDPOINT = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "",
                   "DriverOpts": None, "GwPriority": 0, "NetworkID": "", "EndpointID": "",
                   "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                   "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


def empty_settings() -> dict[str, Any]:
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": {}}


def _new_id() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


def mode_of(c: Container) -> str:
    mode = str(c.r["HostConfig"].get("NetworkMode") or "default")
    return "bridge" if mode == "default" else mode


class NetworkService:
    def __init__(self, data_root: str, exec_root: str, events: EventBus,
                 bridge: str = "matou0", bip: str = "", ipv6: bool = False,
                 fixed_cidr_v6: str = "") -> None:
        self.dir = os.path.join(data_root, "network")
        self.sandboxes = os.path.join(exec_root, "netns")
        for d in (self.dir, self.sandboxes):
            os.makedirs(d, 0o700, exist_ok=True)
        self.events = events
        self.bridge_name = bridge
        self.bip = bip
        self.ipv6 = ipv6 or bool(fixed_cidr_v6)  # IPv6 on the default bridge (--ipv6)
        self.fixed_cidr_v6 = fixed_cidr_v6
        self.ports = Allocator()
        self.rules = bridges.Rules(Firewall(bridge))
        self.dns = dns.Server(self._lookup)
        state = jsonfile.read(self._path(), dict)
        self.records: dict[str, dict[str, Any]] = state.get("Networks") or {}
        self._predefined()
        self.bridges: dict[str, bridges.BridgeNetwork] = {}
        self.ready = False
        # set by the container service: the containers, and how to save one
        self.members: Callable[[], Iterable[Container]] = list
        self.save: Callable[[Container], None] = lambda c: None
        self.lock = asyncio.Lock()

    def _path(self) -> str:
        return os.path.join(self.dir, "networks.json")

    def _persist(self) -> None:
        jsonfile.write_atomic(self._path(), {"Networks": self.records})

    def _predefined(self) -> None:
        have = {r["Name"] for r in self.records.values()}
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            if name in have:
                continue
            rec = _record(name, driver, {}, {})
            if name == "bridge":
                rec["Options"] = {
                    "com.docker.network.bridge.default_bridge": "true",
                    "com.docker.network.bridge.enable_icc": "true",
                    "com.docker.network.bridge.enable_ip_masquerade": "true",
                    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                    _BRIDGE_NAME: self.bridge_name, _MTU: "1500"}
            self.records[rec["Id"]] = rec
        for rec in self.records.values():
            if rec["Name"] == "bridge":
                rec["Options"][_BRIDGE_NAME] = self.bridge_name
                self._default_ipv6(rec)

    def _default_ipv6(self, rec: dict[str, Any]) -> None:
        """The default bridge has IPv6 as the daemon's options say, this start."""
        configs = [c for c in rec["IPAM"].get("Config") or []
                   if ":" not in str(c.get("Subnet", ""))]
        if self.ipv6:
            old: dict[str, Any] = next((c for c in rec["IPAM"].get("Config") or []
                                        if ":" in str(c.get("Subnet", ""))), {})
            subnet = self.fixed_cidr_v6 or old.get("Subnet") or self._ula(rec["Id"])
            try:
                ipaddress.IPv6Network(subnet, strict=False)
            except ValueError as e:
                raise InvalidArgument(f"--fixed-cidr-v6 {subnet}: {e}") from e
            configs = [*(configs or [{}]), {"Subnet": subnet}]
        rec["EnableIPv6"] = self.ipv6
        rec["IPAM"]["Config"] = configs

    # -- lookup --------------------------------------------------------------------------------

    def get(self, ref: str) -> dict[str, Any]:
        if ref in self.records:
            return self.records[ref]
        for rec in self.records.values():
            if rec["Name"] == ref:
                return rec
        found = [r for r in self.records.values() if r["Id"].startswith(ref)] if ref else []
        if len(found) == 1:
            return found[0]
        raise NotFound(f"network {ref} not found")

    def all(self) -> list[dict[str, Any]]:
        return list(self.records.values())

    def _default(self) -> dict[str, Any]:
        return self.get("bridge")

    # -- daemon start and stop ---------------------------------------------------------------

    async def setup(self, running: list[Container]) -> None:
        """Every bridge network's link, matou's rules with the ports of containers still
        running from before (live restore), and their DNS."""
        if self.bridge_name == "none":
            self._persist()
            return
        if not netfilter.available():
            log.warning("iptables not found: containers get no bridge network")
            return
        for rec in list(self.records.values()):
            if rec["Driver"] != "bridge":
                continue
            try:
                await asyncio.to_thread(self._bring_up, rec)
            except Exception as e:
                log.error("network %s: %s", rec["Name"], e)
        self._persist()
        for c in running:
            att = c.r.get("MatouNet")
            if att:
                self.ports.claim(c.id, from_docker(att.get("Ports")))
        await asyncio.to_thread(self._reinstall, running)
        netfilter.sysctl("net.ipv4.ip_forward", "1")
        self.ready = True
        for c in running:
            if (c.r.get("MatouNet") or {}).get("Dns") and os.path.exists(self.sandbox_path(c)):
                try:
                    await self.dns.serve(c.id, self.sandbox_path(c))
                except Exception as e:
                    log.warning("dns for %s: %s", c.id[:12], e)

    def _bring_up(self, rec: dict[str, Any]) -> None:
        """The bridge of ``rec``: its subnet decided (and kept) once, its link made."""
        default = rec["Name"] == "bridge"
        configs: list[dict[str, Any]] = rec["IPAM"].get("Config") or []
        conf: dict[str, Any] = next(
            (c for c in configs if ":" not in str(c.get("Subnet", ""))), {})
        conf6: dict[str, Any] = next(
            (c for c in configs if ":" in str(c.get("Subnet", ""))), {}) \
            if rec.get("EnableIPv6") else {}
        subnet, gateway, ip_range = conf.get("Subnet", ""), conf.get("Gateway", ""), \
            conf.get("IPRange", "")
        link = rec["Options"].get(_BRIDGE_NAME) or "br-" + rec["Id"][:12]
        if default and self.bip:
            iface = ipaddress.IPv4Interface(self.bip)
            subnet, gateway = str(iface.network), str(iface.ip)
        elif default or not rec.get("MatouUserSubnet"):
            taken = netlink.routed_networks(besides=link) + [
                ipaddress.IPv4Network(s) for s in self._subnets(besides=rec["Id"])
                if ":" not in s]
            subnet = bridges.free_subnet(taken, subnet)
            if conf.get("Subnet") != subnet:
                gateway = ""
        net = bridges.BridgeNetwork(rec["Id"], rec["Name"], link, self.dir, subnet, gateway,
                                    int(rec["Options"].get(_MTU) or 1500),
                                    bool(rec.get("Internal")), ip_range,
                                    conf6.get("Subnet", ""), conf6.get("Gateway", ""),
                                    conf6.get("IPRange", ""))
        net.setup()
        new_conf = {"Subnet": net.subnet, "Gateway": net.gateway}
        if ip_range:
            new_conf["IPRange"] = ip_range
        if conf.get("AuxiliaryAddresses"):
            new_conf["AuxiliaryAddresses"] = conf["AuxiliaryAddresses"]
            for host, ip in conf["AuxiliaryAddresses"].items():
                net.pool.allocate(f"aux:{host}", ip)
        rec["IPAM"]["Config"] = [new_conf]
        if net.pool6 is not None:
            rec["IPAM"]["Config"].append({**{k: v for k, v in conf6.items()},
                                          "Subnet": str(net.pool6.subnet),
                                          "Gateway": str(net.pool6.gateway)})
        rec["MatouBridge"] = link
        self.bridges[rec["Id"]] = net

    def _subnets(self, besides: str = "") -> list[str]:
        out = []
        for rec in self.records.values():
            if rec["Id"] != besides:
                out += [c["Subnet"] for c in rec["IPAM"].get("Config") or [] if c.get("Subnet")]
        return out

    def _reinstall(self, running: Iterable[Container] | None = None) -> None:
        ports: list[tuple[str, PortMap]] = []
        ports6: list[tuple[str, PortMap]] = []
        for c in running if running is not None else self.members():
            att = c.r.get("MatouNet") or {}
            if c.running and att.get("Ports") and att.get("IP"):
                ports += [(att["IP"], m) for m in from_docker(att["Ports"])]
                if att.get("IP6"):
                    ports6 += [(att["IP6"], m) for m in from_docker(att["Ports"])]
        self.rules.install([b.link() for b in self.bridges.values()], ports, ports6)

    async def shutdown(self, any_running: bool) -> None:
        """Containers still running keep their network (live restore); with none left,
        matou's rules and bridges go."""
        self.dns.stop_all()
        if not self.ready or any_running:
            return
        await asyncio.to_thread(self.rules.remove_all)
        for net in self.bridges.values():
            await asyncio.to_thread(net.teardown)
        self.ready = False

    # -- networks: create, remove, prune ---------------------------------------------------

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("network name is required")
        driver = body.get("Driver") or "bridge"
        if driver in ("host", "null"):
            raise FailedPrecondition(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise NotFound(f'plugin "{driver}" not found')
        ipam = body.get("IPAM") or {}
        if not isinstance(ipam, dict):
            raise InvalidArgument("IPAM must be an object")
        if (ipam.get("Driver") or "default") != "default":
            raise NotFound(f'plugin "{ipam["Driver"]}" not found')
        given = [c for c in ipam.get("Config") or [] if isinstance(c, dict)]
        configs = [c for c in given if ":" not in str(c.get("Subnet", ""))]
        configs6 = [c for c in given if ":" in str(c.get("Subnet", ""))]
        enable6 = bool(body.get("EnableIPv6"))
        if configs6 and not enable6:
            raise InvalidArgument(f"IPv6 subnet {configs6[0]['Subnet']} given, but IPv6 is "
                                  "not enabled on the network (EnableIPv6, --ipv6)")
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        async with self.lock:
            if any(r["Name"] == name for r in self.records.values()):
                raise AlreadyExists(f"network with name {name} already exists")
            rec = _record(name, "bridge", options, body.get("Labels") or {})
            rec.update({"Internal": bool(body.get("Internal")),
                        "Attachable": bool(body.get("Attachable")),
                        "EnableIPv6": bool(body.get("EnableIPv6"))})
            rec["IPAM"] = {"Driver": "default", "Options": ipam.get("Options") or None,
                           "Config": []}
            if configs:
                conf = {k: configs[0][k] for k in ("Subnet", "IPRange", "Gateway",
                                                   "AuxiliaryAddresses") if configs[0].get(k)}
                if conf.get("Subnet"):
                    self._check_subnet(conf["Subnet"])
                    rec["MatouUserSubnet"] = True
                rec["IPAM"]["Config"] = [conf]
            if enable6:
                conf6 = {k: configs6[0][k] for k in ("Subnet", "IPRange", "Gateway")
                         if configs6 and configs6[0].get(k)}
                if conf6.get("Subnet"):
                    self._check_subnet(conf6["Subnet"])
                    rec["MatouUserSubnet6"] = True
                else:  # a unique local /64 of its own, as dockerd 27+ picks one
                    conf6["Subnet"] = self._ula(rec["Id"])
                rec["IPAM"]["Config"] = [*(rec["IPAM"]["Config"] or [{}]), conf6]
            if self.bridge_name == "none" or not self.ready:
                raise FailedPrecondition("bridge networking is not available on this daemon")
            await asyncio.to_thread(self._create, rec)
        self.events.emit("network", "create", rec["Id"], {"name": name, "type": "bridge"})
        return rec

    def _check_subnet(self, subnet: str) -> None:
        try:
            net = ipaddress.ip_network(subnet, strict=False)
        except ValueError as e:
            raise InvalidArgument(f"invalid subnet {subnet}: {e}") from e
        for other in self._subnets():
            theirs = ipaddress.ip_network(other, strict=False)
            if theirs.version == net.version and net.overlaps(theirs):
                raise FailedPrecondition("Pool overlaps with other one on this address space")

    def _ula(self, ident: str) -> str:
        """A unique local IPv6 /64 (fd00::/8) for network ``ident``, none other's."""
        import hashlib

        taken = [ipaddress.ip_network(x, strict=False) for x in self._subnets() if ":" in x]
        for salt in range(64):
            h = hashlib.sha256(f"{ident}:{salt}".encode()).digest()
            net = ipaddress.IPv6Network((b"\xfd" + h[:7] + bytes(8), 64))
            if not any(net.overlaps(t) for t in taken):
                return str(net)
        raise FailedPrecondition("could not find a free IPv6 subnet")

    def _create(self, rec: dict[str, Any]) -> None:
        self.records[rec["Id"]] = rec
        try:
            self._bring_up(rec)
            self._reinstall()
        except BaseException:
            del self.records[rec["Id"]]
            net = self.bridges.pop(rec["Id"], None)
            if net is not None:
                net.teardown()
            raise
        self._persist()

    def users_of(self, rec: dict[str, Any]) -> list[Container]:
        return [c for c in self.members()
                if rec["Name"] in (c.r.get("NetworkSettings") or {}).get("Networks", {})]

    async def remove(self, ref: str) -> None:
        rec = self.get(ref)
        if rec["Name"] in PREDEFINED:
            raise FailedPrecondition(f"{rec['Name']} is a pre-defined network and cannot be "
                                     "removed")
        async with self.lock:
            active = [c for c in self.users_of(rec) if c.running]
            if active:
                raise FailedPrecondition(f"error while removing network: network {rec['Name']} "
                                         f"id {rec['Id']} has active endpoints")
            for c in self.users_of(rec):  # stopped: forget their endpoint, as Docker does
                c.r["NetworkSettings"]["Networks"].pop(rec["Name"], None)
                self.save(c)
            await asyncio.to_thread(self._remove, rec)
        self.events.emit("network", "destroy", rec["Id"], {"name": rec["Name"],
                                                           "type": "bridge"})

    def _remove(self, rec: dict[str, Any]) -> None:
        del self.records[rec["Id"]]
        self._persist()
        net = self.bridges.pop(rec["Id"], None)
        self._reinstall()
        if net is not None:
            net.teardown()
        try:
            os.unlink(os.path.join(self.dir, f"{rec['Id']}.json"))
        except FileNotFoundError:
            pass

    async def prune(self, keep: Callable[[dict[str, Any]], bool]) -> list[str]:
        gone = []
        for rec in list(self.records.values()):
            if rec["Name"] in PREDEFINED or self.users_of(rec) or keep(rec):
                continue
            await self.remove(rec["Id"])
            gone.append(rec["Name"])
        return gone

    # -- a container's endpoints ---------------------------------------------------------

    def sandbox_path(self, c: Container) -> str:
        return os.path.join(self.sandboxes, c.id)

    def init_settings(self, host: dict[str, Any], networking: dict[str, Any] | None
                      ) -> dict[str, Any]:
        """NetworkSettings of a new container, from NetworkMode and EndpointsConfig;
        refuses networks that do not exist."""
        mode = str(host.get("NetworkMode") or "default")
        settings = empty_settings()
        if mode.startswith("container:"):
            return settings
        name = "bridge" if mode == "default" else mode
        rec = self.get(name)
        endpoints = {"bridge" if k == "default" else k: v  # the CLI says "default"
                     for k, v in ((networking or {}).get("EndpointsConfig") or {}).items()}
        first = endpoints.pop(name, None) or endpoints.pop(rec["Id"], None) or {}
        settings["Networks"][rec["Name"]] = self._endpoint(rec, first)
        if rec["Name"] in ("host", "none") and endpoints:
            raise InvalidArgument("container cannot be connected to multiple networks with "
                                  f"one of the networks in {rec['Name']} mode")
        for ref, conf in endpoints.items():
            other = self.get(ref)
            settings["Networks"][other["Name"]] = self._endpoint(other, conf or {})
        return settings

    def _endpoint(self, rec: dict[str, Any], conf: dict[str, Any]) -> dict[str, Any]:
        aliases = conf.get("Aliases")
        ipam = conf.get("IPAMConfig") or None
        if ipam and ((ipam.get("IPv4Address") and (rec["Name"] == "bridge" or
                                                   not rec.get("MatouUserSubnet"))) or
                     (ipam.get("IPv6Address") and not rec.get("MatouUserSubnet6"))):
            raise InvalidArgument("user specified IP address is supported only when "
                                  "connecting to networks with user configured subnets")
        if aliases and rec["Name"] in PREDEFINED:
            raise InvalidArgument("network-scoped alias is supported only for containers in "
                                  "user defined networks")
        return {**_EMPTY_ENDPOINT, "IPAMConfig": ipam, "Aliases": list(aliases or []) or None,
                "Links": conf.get("Links") or None, "NetworkID": rec["Id"],
                "DriverOpts": conf.get("DriverOpts") or None}

    async def connect(self, c: Container, lookup: Callable[[str], Container]) -> str | None:
        """Before the container starts: its namespace's path for the spec, or None to let
        the runtime make one (none) or use the host's (host)."""
        mode = mode_of(c)
        settings = c.r.get("NetworkSettings") or empty_settings()
        c.r["NetworkSettings"] = settings
        c.r.pop("MatouNet", None)
        if mode.startswith("container:"):
            other = lookup(mode.split(":", 1)[1])
            if not other.running:
                raise FailedPrecondition(f"cannot join network of a non running container: "
                                         f"{other.id}")
            path = self.sandbox_path(other)
            return path if os.path.exists(path) else f"/proc/{other.state['Pid']}/ns/net"
        if mode in ("host", "none"):
            return None
        if not self.ready:
            raise FailedPrecondition("bridge networking is not available (see the daemon's "
                                     "log)")
        path = self.sandbox_path(c)
        await asyncio.to_thread(bridges.new_sandbox, path)
        c.r["MatouNet"] = {"Endpoints": {}, "Ports": {}}
        try:
            for name in list(settings["Networks"]):
                await self._plug(c, name, path)
            if any(n not in PREDEFINED for n in settings["Networks"]):
                await self.dns.serve(c.id, path)
                c.r["MatouNet"]["Dns"] = True
        except BaseException:
            await self.disconnect(c)
            raise
        settings.update({"SandboxID": _new_id(), "SandboxKey": path})
        return path

    async def _plug(self, c: Container, name: str, path: str) -> None:
        rec = self.get(name)
        net = self.bridges.get(rec["Id"])
        if net is None:
            raise FailedPrecondition(f"network {name} is not available")
        mat = c.r["MatouNet"]
        first = not mat["Endpoints"]
        ep = c.r["NetworkSettings"]["Networks"][name]
        wanted = []
        config = c.r["Config"]
        if first:
            wanted = requests(c.r["HostConfig"].get("PortBindings"),
                              (config.get("ExposedPorts") or {}).keys(),
                              bool(c.r["HostConfig"].get("PublishAllPorts")))
        used = {e["Ifname"] for e in mat["Endpoints"].values()}
        ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
        mac = (c.r.get("MatouMacs") or {}).get(name) or (
            str(config.get("MacAddress") or "") if first else "")
        att = await asyncio.to_thread(
            net.attach, c.id, path, self.rules, self.ports, wanted,
            ((ep.get("IPAMConfig") or {}).get("IPv4Address") or ""), ifname, first, mac,
            ((ep.get("IPAMConfig") or {}).get("IPv6Address") or ""))
        mat["Endpoints"][rec["Id"]] = {"IP": att.ip, "HostIf": att.host_if, "Ifname": ifname,
                                       "IP6": att.ip6}
        if first:
            mat["IP"] = att.ip
            mat["IP6"] = att.ip6
            mat["Ports"] = docker_ports(att.ports, (config.get("ExposedPorts") or {}).keys())
            c.r["NetworkSettings"]["Ports"] = mat["Ports"]
        names = None
        if name not in PREDEFINED:
            names = [c.name, *(ep.get("Aliases") or []), c.id[:12]]
        ep.update({"MacAddress": att.mac, "NetworkID": rec["Id"], "EndpointID": _new_id(),
                   "Gateway": att.gateway, "IPAddress": att.ip, "IPPrefixLen": att.prefixlen,
                   "IPv6Gateway": att.gateway6, "GlobalIPv6Address": att.ip6,
                   "GlobalIPv6PrefixLen": att.prefixlen6, "DNSNames": names})
        if name == "bridge":  # the top-level fields speak of the default bridge only
            c.r["NetworkSettings"].update({
                "EndpointID": ep["EndpointID"], "Gateway": att.gateway, "IPAddress": att.ip,
                "IPPrefixLen": att.prefixlen, "MacAddress": att.mac,
                "IPv6Gateway": att.gateway6, "GlobalIPv6Address": att.ip6,
                "GlobalIPv6PrefixLen": att.prefixlen6})

    async def _unplug(self, c: Container, netid: str, unplug: bool) -> None:
        mat = c.r.get("MatouNet") or {}
        e = mat.get("Endpoints", {}).pop(netid, None)
        net = self.bridges.get(netid)
        if e is None or net is None:
            return
        ports = tuple(from_docker(mat.get("Ports"))) if e["IP"] == mat.get("IP") else ()
        att = bridges.Attachment(netid, e["IP"], 0, "", "", e["HostIf"], ports,
                                 e.get("IP6", "") if ports else "")
        try:
            await asyncio.to_thread(net.detach, c.id, att, self.rules, self.ports, unplug)
        except Exception as ex:
            log.warning("detach %s from %s: %s", c.id[:12], net.name, ex)

    async def disconnect(self, c: Container) -> None:
        """After the container stopped: its addresses, ports, DNS and sandbox go."""
        self.dns.stop(c.id)
        mat = c.r.get("MatouNet") or {}
        for netid in list(mat.get("Endpoints", {})):
            await self._unplug(c, netid, unplug=False)
        c.r.pop("MatouNet", None)
        path = self.sandbox_path(c)
        if os.path.exists(path):
            await asyncio.to_thread(bridges.remove_sandbox, path)
        settings = c.r.get("NetworkSettings") or empty_settings()
        macs = c.r.get("MatouMacs") or {}
        for name, ep in (settings.get("Networks") or {}).items():
            ep.update({"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                       "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                       "MacAddress": macs.get(name, ""), "DNSNames": None})
        settings.update({"SandboxID": "", "SandboxKey": "", "Ports": {}, "EndpointID": "",
                         "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": "",
                         "IPv6Gateway": "", "GlobalIPv6Address": "",
                         "GlobalIPv6PrefixLen": 0})

    # -- docker network connect / disconnect ----------------------------------------------

    async def attach(self, ref: str, c: Container, conf: dict[str, Any]) -> None:
        rec = self.get(ref)
        mode = mode_of(c)
        if mode in ("host", "none") or mode.startswith("container:") or \
                rec["Name"] in ("host", "none"):
            raise FailedPrecondition(
                f"container cannot be disconnected from host network or connected to "
                f"{rec['Name']} network" if "host" in (mode, rec["Name"]) else
                "container sharing network namespace with another container or host cannot "
                "be connected to any other network")
        networks = c.r["NetworkSettings"]["Networks"]
        if rec["Name"] in networks:
            raise FailedPrecondition(f"endpoint with name {c.name} already exists in network "
                                     f"{rec['Name']}")
        networks[rec["Name"]] = self._endpoint(rec, conf)
        if conf.get("MacAddress"):
            c.r.setdefault("MatouMacs", {})[rec["Name"]] = str(conf["MacAddress"]).lower()
            networks[rec["Name"]]["MacAddress"] = c.r["MatouMacs"][rec["Name"]]
        if c.running:
            try:
                await self._plug(c, rec["Name"], self.sandbox_path(c))
                if rec["Name"] not in PREDEFINED:
                    await self.dns.serve(c.id, self.sandbox_path(c))
                    c.r["MatouNet"]["Dns"] = True
            except BaseException:
                networks.pop(rec["Name"], None)
                raise
        self.save(c)
        self.events.emit("network", "connect", rec["Id"], {"name": rec["Name"],
                                                           "type": "bridge", "container": c.id})

    async def detach(self, ref: str, c: Container, force: bool) -> None:
        rec = self.get(ref)
        networks = c.r["NetworkSettings"]["Networks"]
        if rec["Name"] not in networks:  # even with force, as dockerd
            raise FailedPrecondition(f"container {c.id} is not connected to network "
                                     f"{rec['Name']}")
        if rec["Name"] in ("host", "none"):
            raise FailedPrecondition(f"container cannot be disconnected from {rec['Name']} "
                                     "network")
        if c.running:
            await self._unplug(c, rec["Id"], unplug=True)
        networks.pop(rec["Name"])
        (c.r.get("MatouMacs") or {}).pop(rec["Name"], None)
        self.save(c)
        self.events.emit("network", "disconnect", rec["Id"], {
            "name": rec["Name"], "type": "bridge", "container": c.id})

    # -- DNS and files ----------------------------------------------------------------------

    def _lookup(self, owner: str, name: str) -> list[str] | None:
        me = next((c for c in self.members() if c.id == owner), None)
        if me is None:
            return None
        mine = {n: ep for n, ep in me.r["NetworkSettings"]["Networks"].items()
                if n not in PREDEFINED}
        found: list[str] = []
        linked = {}  # an endpoint's links: ALIAS → container name, on that network
        for n, ep in mine.items():
            for link in ep.get("Links") or []:
                target, _, alias = str(link).partition(":")
                linked[(alias or target).lower()] = (target.lstrip("/"), n)
        for other in self.members():
            if not other.running:
                continue
            if name in linked and linked[name][0] in (other.name, other.id) and \
                    linked[name][1] in other.r["NetworkSettings"]["Networks"]:
                ip = other.r["NetworkSettings"]["Networks"][linked[name][1]].get("IPAddress")
                if ip:
                    found.append(ip)
                continue
            for n, ep in other.r["NetworkSettings"]["Networks"].items():
                if n in mine and ep.get("IPAddress") and name in (
                        x.lower() for x in ep.get("DNSNames") or []):
                    found.append(ep["IPAddress"])
                    if ep.get("GlobalIPv6Address"):
                        found.append(ep["GlobalIPv6Address"])
        return found or None

    def resolv_conf(self, c: Container, host_text: str) -> str:
        if not any(n not in PREDEFINED for n in c.r["NetworkSettings"]["Networks"]):
            return host_text
        keep = [line for line in host_text.splitlines()
                if line.split()[:1] in (["search"], ["domain"], ["options"])]
        if not any("ndots:" in line for line in keep if line.startswith("options")):
            keep.append("options ndots:0")
        return "\n".join([f"nameserver {dns.ADDRESS}", *keep]) + "\n"

    def hosts_entry(self, c: Container) -> str:
        att = c.r.get("MatouNet")
        return str(att.get("IP") or "") if att else ""

    # -- what the API shows --------------------------------------------------------------------

    def inspect(self, rec: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in rec.items() if not k.startswith("Matou")}
        members = {}
        for c in self.users_of(rec):
            ep = c.r["NetworkSettings"]["Networks"][rec["Name"]]
            if c.running and ep.get("IPAddress"):
                members[c.id] = {"Name": c.name, "EndpointID": ep["EndpointID"],
                                 "MacAddress": ep["MacAddress"],
                                 "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}",
                                 "IPv6Address": f"{ep['GlobalIPv6Address']}/"
                                 f"{ep['GlobalIPv6PrefixLen']}"
                                 if ep.get("GlobalIPv6Address") else ""}
        out["Containers"] = members
        return out

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


def _record(name: str, driver: str, options: dict[str, str],
            labels: dict[str, str]) -> dict[str, Any]:
    return {"Name": name, "Id": _new_id(), "Created": timestamps.format(), "Scope": "local",
            "Driver": driver, "EnableIPv4": True, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": []},
            "Internal": False, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Options": options,
            "Labels": labels}
