"""System endpoints: /_ping, /version, /info, /events, /system/df, /build/prune."""

from __future__ import annotations

import contextlib
import json
import os
import time

from aiohttp import web

from matou import __version__
from matou.api.server import (
    MAX_API,
    MIN_API,
    engine_of,
    filters,
    json_response,
    timestamp,
    version_text,
)
from matou.engine.events import Event
from matou.errors import InvalidArgument


def _ping_headers() -> dict[str, str]:
    return {"API-Version": version_text(MAX_API), "OSType": "linux",
            "Docker-Experimental": "false", "Builder-Version": "1",
            "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}


def _profile_name(default: str) -> str:
    """How info names the daemon's default seccomp profile (as dockerd does)."""
    return "builtin" if not default else "unconfined" if default == "unconfined" \
        else "custom"


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
        "SecurityOptions": [
            f"name=seccomp,profile={_profile_name(e.config.seccomp_profile)}"],
        "Warnings": [],
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
    """since/until in nanoseconds, as the event bus counts."""
    seconds = timestamp(text, now)
    return None if seconds is None else int(seconds * 1e9)


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
    """`docker system df`: images with the containers using each, containers with their
    own layer's size, volumes with their size and reference count; `type` narrows it."""
    import asyncio
    from collections import Counter

    from matou.api.containers import _summary
    from matou.api.images import summary
    from matou.engine import containers as ctrs
    from matou.oci.image import chain_ids

    e = engine_of(request)
    kinds = set(request.query.getall("type", [])) or {"container", "image", "volume",
                                                        "build-cache"}
    unknown = kinds - {"container", "image", "volume", "build-cache"}
    if unknown:
        raise InvalidArgument(f"unknown object type: {sorted(unknown)[0]}")
    everyone = e.containers.all()
    out: dict[str, object] = {}
    if "image" in kinds:
        images = await e.images.all()
        users = Counter(c.r["Image"] for c in everyone)
        layers = {i.id: list(zip(chain_ids(i.config.rootfs_diff_ids), i.layer_sizes,
                                 strict=False)) for i in images}
        holders = Counter(chain for pairs in layers.values() for chain, _ in pairs)
        sizes = dict(pair for pairs in layers.values() for pair in pairs)
        out["LayersSize"] = sum(sizes.values())  # a layer shared by images counts once
        out["Images"] = [summary(i, users.get(str(i.id), 0)) | {"SharedSize": sum(
            size for chain, size in layers[i.id] if holders[chain] > 1)} for i in images]
    if "container" in kinds:
        listed = []
        for c in everyone:
            item = _summary(e, c)
            item["SizeRw"], item["SizeRootFs"] = await asyncio.to_thread(
                ctrs.sizes, e.containers, c)
            listed.append(item)
        out["Containers"] = listed
    if "volume" in kinds:
        refs = Counter(m["Name"] for c in everyone for m in c.r.get("Mounts") or []
                       if m["Type"] == "volume")
        volumes = []
        for v in e.volumes.all():
            size = await asyncio.to_thread(_tree_size, str(v["Mountpoint"]))
            volumes.append({k: v[k] for k in ("Name", "Driver", "Mountpoint", "CreatedAt",
                                              "Labels", "Options", "Scope")} |
                           {"UsageData": {"Size": size, "RefCount": refs.get(str(v["Name"]),
                                                                               0)}})
        out["Volumes"] = volumes
    if "build-cache" in kinds:
        out["BuildCache"] = []  # matou builds no images, so it caches no build steps
    return json_response(out)


def _tree_size(path: str) -> int:
    """The bytes of the files under ``path`` (each inode once), not following links."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size if not os.path.isdir(os.path.join(root, name)) else 0
    return total


async def build_prune(request: web.Request) -> web.StreamResponse:
    """`docker builder prune` and the last step of `docker system prune`: matou builds no
    images, so there is never a build cache to delete."""
    return json_response({"CachesDeleted": [], "SpaceReclaimed": 0})


ROUTES = [
    ("GET", "/_ping", ping), ("HEAD", "/_ping", ping), ("GET", "/version", version),
    ("GET", "/info", info), ("GET", "/events", events), ("GET", "/system/df", df),
    ("POST", "/build/prune", build_prune),
]
