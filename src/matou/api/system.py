"""System endpoints: /_ping, /version, /info, /events, /system/df."""

from __future__ import annotations

import contextlib
import json
import time

from aiohttp import web

from matou import __version__
from matou.api.server import MAX_API, MIN_API, engine_of, filters, json_response, version_text
from matou.engine.events import Event
from matou.errors import InvalidArgument
from matou.oci import timestamps


def _ping_headers() -> dict[str, str]:
    return {"API-Version": version_text(MAX_API), "OSType": "linux",
            "Docker-Experimental": "false", "Builder-Version": "1",
            "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


async def ping(request: web.Request) -> web.StreamResponse:
    body = "" if request.method == "HEAD" else "OK"
    return web.Response(text=body, content_type="text/plain", headers=_ping_headers())


async def version(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    host = e.info_host()
    details = {"ApiVersion": version_text(MAX_API), "MinAPIVersion": version_text(MIN_API),
               "Os": "linux", "Arch": _arch(str(host["arch"])),
               "KernelVersion": host["kernel"], "GitCommit": "", "GoVersion":
               f"python{host['python']}", "Experimental": "false", "BuildTime": ""}
    return json_response({
        "Platform": {"Name": "matou"},
        "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
        "Version": __version__, **{k: v for k, v in details.items() if k != "Experimental"},
    })


def _arch(machine: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


async def info(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    host = e.info_host()
    images = await e.images.all()
    store = e.images.store
    return json_response({
        "ID": e.id, "Containers": len(e.containers.containers),
        "ContainersRunning": sum(c.running for c in e.containers.all()),
        "ContainersPaused": 0,
        "ContainersStopped": sum(not c.running for c in e.containers.all()),
        "Images": len(images),
        "Driver": "overlay2" if store.snapshots.kind == "overlayfs" else "vfs",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Snapshotter", store.snapshots.kind]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"],
                    "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "CPUShares": True, "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True,
        "BridgeNfIptables": False, "BridgeNfIp6tables": False, "Debug": e.config.debug,
        "NFd": _nfd(), "OomKillDisable": True, "NGoroutines": 1,
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": "1",
        "NEventsListener": len(e.events.subscribers), "KernelVersion": host["kernel"],
        "OperatingSystem": host["os"], "OSVersion": "", "OSType": "linux",
        "Architecture": host["arch"], "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                           "Mirrors": list(e.config.registry_mirrors)},
        "NCPU": host["ncpu"], "MemTotal": host["mem"], "GenericResources": None,
        "DockerRootDir": e.config.data_root, "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Name": host["hostname"], "Labels": list(e.config.labels), "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": {"matou": {"path": "matou-runtime"}}, "DefaultRuntime": "matou",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": e.config.live_restore, "Isolation": "", "InitBinary": "",
        "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"], "Warnings": [],
    })


def _nfd() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


def _event_json(ev: Event) -> dict[str, object]:
    out: dict[str, object] = {
        "Type": ev.type, "Action": ev.action,
        "Actor": {"ID": ev.actor_id, "Attributes": ev.attributes},
        "scope": "local", "time": ev.time_nano // 10**9, "timeNano": ev.time_nano,
    }
    if ev.type in ("container", "image"):
        out["status"] = ev.action
        out["id"] = ev.actor_id
        if "image" in ev.attributes:
            out["from"] = ev.attributes["image"]
    return out


def _timestamp(text: str | None, now: float) -> int | None:
    """Docker's since/until: unix seconds (with fraction), RFC 3339, or a duration ago."""
    if not text:
        return None
    try:
        return int(float(text) * 1e9)
    except ValueError:
        pass
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return int((now - float(text[:-1]) * units[text[-1]]) * 1e9)
    seconds = timestamps.parse(text)
    if seconds is None:
        raise InvalidArgument(f"invalid timestamp {text!r}")
    return int(seconds) * 10**9


async def events(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    now = time.time()
    since = _timestamp(request.query.get("since"), now)
    until = _timestamp(request.query.get("until"), now)
    f = filters(request)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    with contextlib.suppress(ConnectionError):  # the client leaves when it has seen enough
        async for ev in e.events.stream(since, until, f):
            await resp.write(json.dumps(_event_json(ev)).encode() + b"\n")
        await resp.write_eof()
    return resp


async def df(request: web.Request) -> web.StreamResponse:
    from matou.api.images import summary

    e = engine_of(request)
    images = await e.images.all()
    return json_response({
        "LayersSize": sum(i.size for i in images),
        "Images": [summary(i, 0) for i in images],
        "Containers": [], "Volumes": [], "BuildCache": [],
    })


ROUTES = [
    ("GET", "/_ping", ping), ("HEAD", "/_ping", ping), ("GET", "/version", version),
    ("GET", "/info", info), ("GET", "/events", events), ("GET", "/system/df", df),
]
