"""Containers with Docker's semantics: create, start (through a shim), attach, wait, kill,
stop, restart, remove, list, inspect, logs — and reattaching to running containers when
the daemon starts again (live restore).

    <data-root>/containers/<id>/config.v2.json   the record, replaced atomically
    <data-root>/containers/<id>/rootfs/          the overlay mount while it runs
    <data-root>/containers/<id>/<id>-json.log    its log (rotated by the shim)
    <data-root>/containers/<id>/{hosts,hostname,resolv.conf}
    <exec-root>/containers/<id>/                 bundle, shim.sock, shim.json, exit.json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from itertools import islice
from typing import Any

from matou.engine import spec as specs
from matou.engine.events import EventBus
from matou.engine.networks import NetworkService
from matou.engine.volumes import VolumeService
from matou.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    MatouError,
    NotFound,
)
from matou.images.store import ImageStore
from matou.linux import libc, unixsock
from matou.oci import timestamps
from matou.shim import logfile
from matou.shim.forkserver import ForkServer
from matou.shim.shim import atomic_json, exec_paths

_ADJ = ("admiring", "brave", "calm", "eager", "gifted", "happy", "jolly", "keen", "lucid",
        "nifty", "quirky", "serene", "stoic", "vibrant", "wizardly", "zealous")
_NAMES = ("hopper", "lovelace", "turing", "curie", "noether", "ritchie", "thompson", "knuth",
          "hamilton", "shannon", "dijkstra", "liskov", "goldberg", "babbage", "kay", "torvalds")


def _now() -> str:
    return timestamps.format()


class Container:
    def __init__(self, record: dict[str, Any]) -> None:
        self.r = record
        self.attach_waiters: list[asyncio.Future[str]] = []
        self.attached: list[asyncio.Event] = []
        self.exited = asyncio.Event()
        self.removed = asyncio.Event()
        self.monitor: asyncio.Task[None] | None = None
        self.restart_task: asyncio.Task[None] | None = None
        self.health: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return str(self.r["Id"])

    @property
    def name(self) -> str:
        return str(self.r["Name"]).lstrip("/")

    @property
    def state(self) -> dict[str, Any]:
        s: dict[str, Any] = self.r["State"]
        return s

    @property
    def running(self) -> bool:
        return bool(self.state.get("Running"))


class ContainerService:
    def __init__(self, data_root: str, exec_root: str, images: ImageStore, events: EventBus,
                 forks: ForkServer, volumes: VolumeService, networks: NetworkService) -> None:
        self.volumes = volumes
        self.networks = networks
        self.seccomp_default = ""  # the daemon's --seccomp-profile (JSON text), or ""
        networks.members = lambda: list(self.containers.values())
        networks.save = self._save
        self.root = os.path.join(data_root, "containers")
        self.run = os.path.join(exec_root, "containers")
        self.runtime_root = os.path.join(exec_root, "runtime")
        for d in (self.root, self.run, self.runtime_root):
            os.makedirs(d, 0o711, exist_ok=True)
        self.images = images
        self.events = events
        self.forks = forks
        self.containers: dict[str, Container] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.lock = asyncio.Lock()
        for cid in os.listdir(self.root):
            path = os.path.join(self.root, cid, "config.v2.json")
            try:
                with open(path) as f:
                    self.containers[cid] = Container(json.load(f))
            except (OSError, ValueError):
                continue  # a container whose create was cut short: removed by rm

    # -- lookup --------------------------------------------------------------------------

    def get(self, name: str) -> Container:
        name = name.lstrip("/")
        if name in self.containers:
            return self.containers[name]
        for c in self.containers.values():
            if c.name == name:
                return c
        matches = [c for c in self.containers.values() if c.id.startswith(name)] if name else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple IDs found with provided prefix: {name}")
        raise NotFound(f"No such container: {name}")

    def all(self) -> list[Container]:
        return sorted(self.containers.values(), key=lambda c: c.r["Created"], reverse=True)

    def images_in_use(self) -> set[str]:
        return {str(c.r["Image"]) for c in self.containers.values()}

    def _dir(self, c: Container) -> str:
        return os.path.join(self.root, c.id)

    def _rundir(self, c: Container) -> str:
        return os.path.join(self.run, c.id)

    def _save(self, c: Container) -> None:
        try:
            atomic_json(os.path.join(self._dir(c), "config.v2.json"), c.r)
        except FileNotFoundError:
            if c.id in self.containers:
                raise
            # removed meanwhile (rm -f racing its exit): nothing left to record

    def warm_forks(self) -> None:
        """A start will follow: have the fork server start, if it is not running, while
        this request goes on (it is let go when idle; see matou.shim.forkserver)."""
        if self.forks.sock is None:
            warming = asyncio.get_running_loop().run_in_executor(None, self.forks.warm)
            # a failure is the start's to report, when its spawn tries again
            warming.add_done_callback(lambda f: f.exception())

    # -- create ----------------------------------------------------------------------------

    async def create(self, name: str | None, config: dict[str, Any], host: dict[str, Any],
                     networking: dict[str, Any] | None = None,
                     platform: str = "") -> Container:
        image_ref = config.get("Image")
        if not image_ref or not isinstance(image_ref, str):
            raise InvalidArgument("config.Image is required")
        image = await asyncio.to_thread(self.images.get, image_ref)
        self.warm_forks()
        if platform:  # `--platform`: the image must be for it, as dockerd 25+ checks
            want = platform.lower().split("/")
            have = [image.config.os, image.config.architecture, image.config.variant]
            if want[0] != have[0] or (len(want) > 1 and want[1] != have[1]) or (
                    len(want) > 2 and want[2] != have[2]):
                actual = "/".join(x for x in have if x)
                raise NotFound(f"image with reference {image_ref} was found but its platform "
                               f"({actual}) does not match the specified platform "
                               f"({platform})")
        net_settings = self.networks.init_settings(host, networking)
        specs.check_host(host)
        if host.get("UTSMode") == "host" and config.get("Hostname"):
            raise InvalidArgument("Conflicting options: hostname and the UTS mode")
        for key in ("NetworkMode", "PidMode", "IpcMode"):
            mode = str(host.get(key) or "")
            if mode.startswith("container:"):
                self.get(mode.split(":", 1)[1])  # Docker refuses one that is not there
        donors = [(self.get(str(v).partition(":")[0]), str(v).partition(":")[2])
                  for v in host.get("VolumesFrom") or []]
        for _, access in donors:
            if access not in ("", "ro", "rw"):
                raise InvalidArgument(f"invalid mode for volumes-from: {access}")
        async with self.lock:
            if name:
                if not _valid_name(name):
                    raise InvalidArgument(f"Invalid container name ({name}), only "
                                          "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
                if any(c.name == name.lstrip("/") for c in self.containers.values()):
                    raise AlreadyExists(f'Conflict. The container name "/{name.lstrip("/")}" '
                                        "is already in use")
            else:
                taken = {c.name for c in self.containers.values()}
                while True:
                    name = f"{random.choice(_ADJ)}_{random.choice(_NAMES)}"
                    if name not in taken:
                        break
            cid = uuid.uuid4().hex + uuid.uuid4().hex
            d = os.path.join(self.root, cid)
            os.makedirs(d, 0o710)
            image_cfg = image.config.config
            merged = dict(config)
            for key in ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels",
                        "ExposedPorts", "Volumes", "StopSignal", "Healthcheck"):
                if merged.get(key) in (None, "", [], {}) and image_cfg.get(key) is not None:
                    merged[key] = image_cfg[key] if key != "Env" else _merge_env(
                        image_cfg.get("Env") or [], config.get("Env") or [])
            if config.get("Env"):
                merged["Env"] = _merge_env(image_cfg.get("Env") or [], config["Env"])
            merged.setdefault("Hostname", cid[:12])
            if not merged.get("Hostname"):
                merged["Hostname"] = cid[:12]
            merged["Image"] = image_ref
            for ep in ((networking or {}).get("EndpointsConfig") or {}).values():
                # API 1.44+ asks for a MAC address here; older clients in Config
                if isinstance(ep, dict) and ep.get("MacAddress") and not merged.get("MacAddress"):
                    merged["MacAddress"] = str(ep["MacAddress"])
            mac = str(merged.get("MacAddress") or "")
            if mac and not re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", mac):
                shutil.rmtree(d)
                raise InvalidArgument(f"invalid MAC address: {mac}")
            entry = merged.get("Entrypoint") or []
            cmd = merged.get("Cmd") or []
            args = [*entry, *cmd]
            if not args:
                shutil.rmtree(d)
                raise InvalidArgument("no command specified")
            host = dict(host)
            host.setdefault("NetworkMode", "default")
            log_config = dict(host.get("LogConfig") or {})
            driver = log_config.get("Type") or "json-file"
            if driver not in ("json-file", "none"):
                shutil.rmtree(d)
                raise InvalidArgument(f"logger: no log driver named '{driver}' is registered")
            host["LogConfig"] = {"Type": driver, "Config": log_config.get("Config") or {}}
            runtime = host.get("Runtime") or "runc"
            if runtime not in ("runc", "matou"):  # both names mean matou's own runtime
                shutil.rmtree(d)
                raise InvalidArgument(f"Unknown runtime specified {runtime}")
            host["Runtime"] = runtime
            policy = (host.get("RestartPolicy") or {}).get("Name") or "no"
            if host.get("AutoRemove") and policy != "no":
                shutil.rmtree(d)
                raise InvalidArgument("can't create 'AutoRemove' container with restart "
                                      "policy")
            record: dict[str, Any] = {
                "Id": cid, "Name": "/" + name.lstrip("/"), "Created": _now(),
                "Path": args[0], "Args": args[1:], "Config": merged, "HostConfig": host,
                "Image": str(image.id), "ImageName": image_ref,
                "State": {"Status": "created", "Running": False, "Paused": False,
                          "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": 0,
                          "ExitCode": 0, "Error": "", "StartedAt": "0001-01-01T00:00:00Z",
                          "FinishedAt": "0001-01-01T00:00:00Z"},
                "RestartCount": 0, "Driver": "overlay2", "Platform": "linux",
                "LogPath": os.path.join(d, f"{cid}-json.log"),
                "ResolvConfPath": os.path.join(d, "resolv.conf"),
                "HostnamePath": os.path.join(d, "hostname"),
                "HostsPath": os.path.join(d, "hosts"),
                "NetworkSettings": net_settings,
            }
            mounts = specs.parse_mounts(merged, host)
            for m in mounts:
                if m["Type"] == "volume":
                    vol = self.volumes.create(m["Name"] or None, anonymous=not m["Name"])
                    m.update({"Name": vol["Name"], "Source": vol["Mountpoint"],
                              "Driver": "local"})
                elif not os.path.exists(m["Source"]):
                    if not m.pop("Create"):
                        shutil.rmtree(d)
                        raise InvalidArgument(f"invalid mount config for type \"bind\": bind "
                                              f"source path does not exist: {m['Source']}")
                    os.makedirs(m["Source"], 0o755, exist_ok=True)  # as `docker run -v`
                m.pop("Create", None)
                m["Mode"] = "" if m["RW"] else "ro"
            for donor, access in donors:  # --volumes-from NAME[:ro|rw]: its mounts, shared
                for m in donor.r.get("Mounts") or []:
                    if any(x["Destination"] == m["Destination"] for x in mounts):
                        continue
                    shared = dict(m)
                    if access:
                        shared["RW"] = access == "rw"
                        shared["Mode"] = "" if shared["RW"] else "ro"
                    mounts.append(shared)
            record["Mounts"] = mounts
            top = image.top_layer
            await asyncio.to_thread(self.images.snapshots.prepare, _snap(cid), top)
            c = Container(record)
            self._save(c)
            self.containers[cid] = c
        self.events.emit("container", "create", cid, {"name": c.name, "image": image_ref})
        return c

    # -- start -------------------------------------------------------------------------------

    async def start(self, name: str) -> Container:
        c = self.get(name)
        async with self.lock:
            if c.running:
                return c  # Docker answers 304 for this; the API layer checks first
            try:
                await self._start(c)
            except BaseException as e:
                for w in c.attach_waiters:  # nobody waits for output that will not come
                    if not w.done():
                        w.set_exception(FailedPrecondition(str(e)))
                c.attach_waiters.clear()
                c.attached.clear()
                raise
        self.events.emit("container", "start", c.id, {"name": c.name,
                                                       "image": c.r["ImageName"]})
        return c

    async def _start(self, c: Container) -> None:
        await _settled(c)  # the last run's network and mounts are gone before the next
        c.r["ManuallyStopped"] = False
        rundir = self._rundir(c)
        shutil.rmtree(rundir, ignore_errors=True)
        os.makedirs(rundir, 0o700)
        netns = await self.networks.connect(c, self.get)
        try:
            await self._launch(c, rundir, netns)
        except BaseException:
            await self.networks.disconnect(c)
            self._save(c)
            raise

    async def _launch(self, c: Container, rundir: str, netns: str | None) -> None:
        await asyncio.to_thread(self._prepare_files, c, netns)
        no_log = (c.r["HostConfig"].get("LogConfig") or {}).get("Type") == "none"
        conf = {"id": c.id, "dir": rundir, "bundle": rundir,
                "runtime_root": self.runtime_root,
                "log": "" if no_log else c.r["LogPath"],
                "tty": bool(c.r["Config"].get("Tty")),
                "open_stdin": bool(c.r["Config"].get("OpenStdin")),
                "stdin_once": bool(c.r["Config"].get("StdinOnce")),
                **_log_opts(c.r["HostConfig"])}
        await asyncio.to_thread(self.forks.spawn, conf)
        sock = os.path.join(rundir, "shim.sock")
        exitf = os.path.join(rundir, "exit.json")
        deadline = time.monotonic() + 30
        while True:
            if os.path.exists(exitf):
                err = _read_json(exitf).get("Error") or "container failed to start"
                await self._finish(c, _read_json(exitf))
                raise FailedPrecondition(err)
            if os.path.exists(sock) and await _shim_call(sock, {"cmd": "status"}):
                break
            if time.monotonic() > deadline:
                raise FailedPrecondition("shim did not come up")
            await asyncio.sleep(0.005)
        # attach streams asked for before start connect first: no output is lost
        for w in c.attach_waiters:
            if not w.done():
                w.set_result(sock)
        for ev in c.attached:
            try:
                await asyncio.wait_for(ev.wait(), 5)
            except TimeoutError:
                pass
        c.attach_waiters.clear()
        c.attached.clear()
        reply = await _shim_call(sock, {"cmd": "start"})
        if not reply or "error" in reply:
            msg = (reply or {}).get("error", "start failed")
            raise FailedPrecondition(msg)
        c.exited.clear()
        c.state.update({"Status": "running", "Running": True, "Pid": reply["pid"],
                        "ExitCode": 0, "Error": "", "StartedAt": _now(),
                        "FinishedAt": "0001-01-01T00:00:00Z"})
        self._save(c)
        c.monitor = asyncio.create_task(self._watch(c))
        c.health = asyncio.create_task(healthcheck(self, c))

    def _prepare_files(self, c: Container, netns: str | None) -> None:
        d = self._dir(c)
        rootfs = os.path.join(d, "rootfs")
        os.makedirs(rootfs, exist_ok=True)
        if not os.path.ismount(rootfs):
            _mount_snapshot(self.images, _snap(c.id), rootfs)
        hostname = c.r["Config"].get("Hostname") or c.id[:12]
        host_mode = c.r["HostConfig"].get("NetworkMode") == "host"
        with open(c.r["HostnamePath"], "w") as f:
            f.write((os.uname().nodename if host_mode else hostname) + "\n")
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
                 "ff02::2\tip6-allrouters"]
        ip = self.networks.hosts_entry(c)
        if ip:
            hosts.append(f"{ip}\t{hostname}")
        link_env: list[str] = []
        for link in c.r["HostConfig"].get("Links") or []:
            # --link NAME:ALIAS (legacy, default bridge): the linked container by name
            target, _, alias = str(link).partition(":")
            other = self.get(target)
            other_ip = self.networks.hosts_entry(other) if other.running else ""
            alias = alias.rsplit("/", 1)[-1] or other.name
            if not other_ip:
                raise FailedPrecondition(f"Cannot link to a non running container: "
                                         f"/{other.name} AS /{c.name}/{alias}")
            hosts.append("\t".join([other_ip, alias, other.id[:12], other.name]))
            link_env += _link_env(alias, c.name, other, other_ip)
        for extra in c.r["HostConfig"].get("ExtraHosts") or []:
            h, _, ip = str(extra).partition(":")
            hosts.append(f"{ip}\t{h}")
        with open(c.r["HostsPath"], "w") as f:
            f.write("\n".join(hosts) + "\n")
        try:
            with open("/etc/resolv.conf") as f:
                resolv = f.read()
        except OSError:
            resolv = ""
        resolv = _resolv_conf(resolv, c.r["HostConfig"])
        resolv = self.networks.resolv_conf(c, resolv)
        with open(c.r["ResolvConfPath"], "w") as f:
            f.write(resolv)
        image = self.images.get(c.r["Image"])
        files = {"/etc/hostname": c.r["HostnamePath"], "/etc/hosts": c.r["HostsPath"],
                 "/etc/resolv.conf": c.r["ResolvConfPath"]}
        for m in c.r.get("Mounts") or []:
            if m["Type"] == "volume":
                from matou.linux.mount import secure_join

                self.volumes.populate(m["Name"], secure_join(rootfs, m["Destination"]))
        config = c.r["Config"] if not link_env else {
            **c.r["Config"], "Env": [*link_env, *(c.r["Config"].get("Env") or [])]}
        spec = specs.build(c.id, config, c.r["HostConfig"], image.config.config,
                           rootfs, files, c.r.get("Mounts") or [], netns, self._joins(c),
                           self.seccomp_default)
        if spec["process"]["cwd"] != "/":
            os.makedirs(os.path.join(rootfs, spec["process"]["cwd"].lstrip("/")),
                        exist_ok=True)
        atomic_json(os.path.join(self._rundir(c), "config.json"), spec)

    def _joins(self, c: Container) -> dict[str, str]:
        """--pid/--ipc/--uts: "host", or the namespace of another running container."""
        joins = {}
        for key, (kind, _) in specs.NAMESPACE_MODES.items():
            mode = str(c.r["HostConfig"].get(key) or "")
            if mode == "host":
                joins[kind] = "host"
            elif mode.startswith("container:"):
                other = self.get(mode.split(":", 1)[1])
                if not other.running or not other.state.get("Pid"):
                    raise FailedPrecondition(f"cannot join {kind.upper()} of a non running "
                                             f"container: {other.name}")
                joins[kind] = f"/proc/{other.state['Pid']}/ns/{kind}"
        return joins

    async def _watch(self, c: Container) -> None:
        sock = os.path.join(self._rundir(c), "shim.sock")
        reply = await _shim_call(sock, {"cmd": "wait"}, timeout=None)
        exitf = os.path.join(self._rundir(c), "exit.json")
        for _ in range(200):
            if os.path.exists(exitf):
                break
            await asyncio.sleep(0.01)
        result = _read_json(exitf) if os.path.exists(exitf) else {
            "ExitCode": (reply or {}).get("exit", 255), "FinishedAt": _now(),
            "Error": "" if reply else "shim exited without a status"}
        await self._finish(c, result)

    async def _finish(self, c: Container, result: dict[str, Any]) -> None:
        c.state.update({"Status": "exited", "Running": False, "Paused": False, "Pid": 0,
                        "ExitCode": int(result.get("ExitCode", 255)),
                        "Error": result.get("Error", ""),
                        "FinishedAt": result.get("FinishedAt") or _now()})
        # restarting before the waiters wake, as dockerd: a client that waited must not
        # find it removable without force
        restart = not c.r["HostConfig"].get("AutoRemove") and self._should_restart(c)
        c.state["Restarting"] = restart
        self._save(c)
        c.exited.set()  # before anything that could fail: waiters must always wake
        await asyncio.to_thread(self._runtime_delete, c)
        await asyncio.to_thread(self._unmount, c)
        await self.networks.disconnect(c)
        self._save(c)
        self.events.emit("container", "die", c.id, {
            "name": c.name, "image": c.r["ImageName"], "exitCode": str(c.state["ExitCode"])})
        if c.r["HostConfig"].get("AutoRemove"):
            # a task: a failed start gets here holding self.lock, which remove takes
            task = asyncio.create_task(self._auto_remove(c))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif restart and self._should_restart(c):
            c.restart_task = asyncio.create_task(self._restart_later(c))
        elif c.state.get("Restarting"):  # stopped meanwhile
            c.state["Restarting"] = False
            self._save(c)

    async def _auto_remove(self, c: Container) -> None:
        try:
            await self.remove(c.id, force=True)
        except NotFound:
            pass

    def _should_restart(self, c: Container) -> bool:
        policy = c.r["HostConfig"].get("RestartPolicy") or {}
        name = policy.get("Name") or "no"
        if c.r.get("ManuallyStopped") or c.id not in self.containers:
            return False
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure":
            limit = int(policy.get("MaximumRetryCount") or 0)
            return c.state["ExitCode"] != 0 and (limit == 0 or c.r["RestartCount"] < limit)
        return False

    async def _restart_later(self, c: Container) -> None:
        """Docker's back-off: 100 ms doubling to a minute; a run of 10 s resets it."""
        ran = _ts(c.state["FinishedAt"]) - _ts(c.state["StartedAt"])
        delay = 0.1 if ran >= 10 or not c.r.get("RestartDelay") else min(
            float(c.r["RestartDelay"]) * 2, 60.0)
        c.r["RestartDelay"] = delay
        c.state["Restarting"] = True
        self._save(c)
        await asyncio.sleep(delay)
        c.state["Restarting"] = False
        if not self._should_restart(c):
            self._save(c)
            return
        c.r["RestartCount"] = int(c.r.get("RestartCount", 0)) + 1
        try:
            await self.start(c.id)
            self.events.emit("container", "restart", c.id, {"name": c.name,
                                                             "image": c.r["ImageName"]})
        except Exception as e:  # recorded like any failed start; the policy may retry
            c.state["Error"] = str(e)
            self._save(c)

    def _runtime_delete(self, c: Container) -> None:
        """The runtime's state and cgroup of a run that ended (the native supervisor
        leaves them: it has no runtime in it)."""
        from matou.runtime.delete import delete
        from matou.runtime.store import Store

        try:
            delete(Store(self.runtime_root), c.id, force=True)
        except (MatouError, OSError):
            pass  # already gone (the Python shim deletes too)

    def _unmount(self, c: Container) -> None:
        rootfs = os.path.join(self._dir(c), "rootfs")
        if os.path.ismount(rootfs):
            try:
                libc.umount2(rootfs, libc.MNT_DETACH)
            except MatouError:
                pass  # already gone (a concurrent finish/remove): nothing left to do

    async def restore(self) -> None:
        """Live restore at daemon start: reattach to running containers' shims, record
        the exits that happened meanwhile."""
        for c in list(self.containers.values()):
            if not c.running:
                policy = (c.r["HostConfig"].get("RestartPolicy") or {}).get("Name")
                if policy == "always" or (policy == "unless-stopped"
                                          and not c.r.get("ManuallyStopped")):
                    c.restart_task = asyncio.create_task(self._restart_later(c))
                continue
            sock = os.path.join(self._rundir(c), "shim.sock")
            status = await _shim_call(sock, {"cmd": "status"}) if os.path.exists(sock) else None
            if status and status.get("exit") is None:
                c.monitor = asyncio.create_task(self._watch(c))
                c.health = asyncio.create_task(healthcheck(self, c))
                continue
            exitf = os.path.join(self._rundir(c), "exit.json")
            await self._finish(c, _read_json(exitf) if os.path.exists(exitf) else {
                "ExitCode": 255, "Error": "container's shim was lost"})

    # -- signals, stop, wait -----------------------------------------------------------------

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        from matou.runtime.kill import kill
        from matou.runtime.store import Store

        c = self.get(name)
        if not c.running:
            raise FailedPrecondition(f"Container {c.id} is not running")
        paused = bool(c.state.get("Paused"))
        if paused and sig != signal.SIGKILL:
            raise FailedPrecondition(f"Container {c.id} is paused. Unpause the container "
                                     "before stopping or killing")
        c.r["ManuallyStopped"] = True  # as dockerd: a killed container is not restarted
        await asyncio.to_thread(kill, Store(self.runtime_root), c.id, sig)
        if paused:  # a frozen process takes its SIGKILL once thawed
            from matou.runtime.pause import resume

            with contextlib.suppress(MatouError):
                await asyncio.to_thread(resume, Store(self.runtime_root), c.id)
            c.state.update({"Paused": False, "Status": "running"})
        self.events.emit("container", "kill", c.id, {"name": c.name, "signal": str(sig),
                                                      "image": c.r["ImageName"]})

    async def stop(self, name: str, timeout: int | None = None) -> bool:
        c = self.get(name)
        c.r["ManuallyStopped"] = True
        if c.restart_task is not None:
            c.restart_task.cancel()
        if not c.running:
            c.state["Restarting"] = False
            self._save(c)
            return False
        stop_signal = _signal(c.r["Config"].get("StopSignal") or "SIGTERM")
        if c.state.get("Paused"):
            stop_signal = signal.SIGKILL  # frozen: nothing could handle a gentler one
        if timeout is None:
            timeout = int(c.r["Config"].get("StopTimeout") or 10)
        try:
            await self.kill(c.id, stop_signal)
            await asyncio.wait_for(c.exited.wait(), max(timeout, 0))
        except TimeoutError:
            await self.kill(c.id, signal.SIGKILL)
            await c.exited.wait()
        except FailedPrecondition:
            pass
        await c.exited.wait()
        await _settled(c)
        self.events.emit("container", "stop", c.id, {"name": c.name,
                                                      "image": c.r["ImageName"]})
        return True

    async def wait(self, name: str, condition: str = "not-running") -> dict[str, Any]:
        c = self.get(name)
        if condition == "next-exit" or (condition == "not-running" and c.running):
            c.exited.clear() if not c.running else None
            await c.exited.wait()
        elif condition == "removed":
            await c.removed.wait()
        return {"StatusCode": c.state["ExitCode"],
                "Error": {"Message": c.state["Error"]} if c.state["Error"] else None}

    # -- remove -------------------------------------------------------------------------------

    def volumes_in_use(self) -> set[str]:
        return {m["Name"] for c in self.containers.values() for m in c.r.get("Mounts") or []
                if m["Type"] == "volume"}

    async def remove(self, name: str, force: bool = False, volumes: bool = False) -> None:
        c = self.get(name)
        if c.restart_task is not None:
            c.restart_task.cancel()
        if not force and c.state.get("Restarting"):
            raise FailedPrecondition(
                f"cannot remove container \"/{c.name}\": container is restarting: stop the "
                "container before removing or force remove")
        if c.running:
            if not force:
                raise FailedPrecondition(
                    f"cannot remove container \"/{c.name}\": container is running: stop the "
                    "container before removing or force remove")
            await self.kill(c.id, signal.SIGKILL)
            await c.exited.wait()
        await _settled(c)
        async with self.lock:
            if c.id not in self.containers:
                return
            await asyncio.to_thread(self._unmount, c)
            if self.images.snapshots.exists(_snap(c.id)):
                await asyncio.to_thread(self.images.snapshots.remove, _snap(c.id))
            shutil.rmtree(self._rundir(c), ignore_errors=True)
            shutil.rmtree(self._dir(c), ignore_errors=True)
            del self.containers[c.id]
            c.removed.set()
            if volumes:  # `rm -v`: the anonymous volumes go with their container
                used = self.volumes_in_use()
                for m in c.r.get("Mounts") or []:
                    if m["Type"] == "volume" and m["Name"] not in used and \
                            self.volumes.inspect(m["Name"]).get("Anonymous"):
                        self.volumes.remove(m["Name"], used)
        self.events.emit("container", "destroy", c.id, {"name": c.name,
                                                         "image": c.r["ImageName"]})

    # -- attach and logs ------------------------------------------------------------------------

    async def attach(self, name: str, stdin: bool, stdout: bool, stderr: bool
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A stream to the container's shim; waits for `start` if it has not run yet.
        None when the container has exited (nothing more to stream)."""
        c = self.get(name)
        attached = asyncio.Event()
        if c.running:
            sock = os.path.join(self._rundir(c), "shim.sock")
        elif c.state["Status"] == "created" or c.state["Status"] == "exited":
            fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            c.attach_waiters.append(fut)
            c.attached.append(attached)
            sock = await fut
        else:
            return None
        try:
            reader, writer = await _open(sock)
        except OSError:
            attached.set()
            return None
        writer.write(json.dumps({"cmd": "attach", "stdin": stdin, "stdout": stdout,
                                 "stderr": stderr}).encode() + b"\n")
        await writer.drain()
        await reader.readline()
        attached.set()
        return reader, writer

    async def resize(self, name: str, h: int, w: int) -> None:
        c = self.get(name)
        if not c.running:
            raise FailedPrecondition(f"Container {c.id} is not running")
        await _shim_call(os.path.join(self._rundir(c), "shim.sock"),
                         {"cmd": "resize", "h": h, "w": w})

    async def logs(self, name: str, follow: bool, stdout: bool, stderr: bool,
                   tail: int | None, since: float, until: float | None,
                   ) -> AsyncIterator[logfile.Entry]:
        """Entries of the json-file log, streamed (never the whole log in memory), then —
        with ``follow`` — new ones as the shim appends them, until the container stops."""
        c = self.get(name)
        path = c.r["LogPath"]

        def wanted(e: logfile.Entry) -> bool:
            return ((e.stream == "stdout" and stdout) or (e.stream == "stderr" and stderr)) \
                and _ts(e.time) >= since and (until is None or _ts(e.time) <= until)

        position: dict[str, int] = {}  # where reading stopped: following goes on from there
        if tail is not None:
            last: deque[logfile.Entry] = deque(maxlen=max(tail, 0))
            for e in logfile.read(path, position):
                if wanted(e):
                    last.append(e)
            for e in last:
                yield e
        else:
            reader = logfile.read(path, position)
            while True:
                batch = await asyncio.to_thread(lambda: list(islice(reader, 1024)))
                if not batch:
                    break
                for e in batch:
                    if wanted(e):
                        yield e
        if not follow:
            return
        try:
            follower = logfile.Follower(path, position)
        except FileNotFoundError:
            return
        try:  # once more after the container stopped: what it wrote meanwhile
            while True:
                done = not c.running
                for e in await asyncio.to_thread(follower.poll):
                    if wanted(e):
                        yield e
                if done:
                    return
                try:
                    await asyncio.wait_for(c.exited.wait(), 0.1)
                except TimeoutError:
                    pass
        finally:
            follower.close()


def _link_env(alias: str, me: str, other: Container, ip: str) -> list[str]:
    """The variables a legacy link brings (ALIAS_NAME, ALIAS_PORT…, ALIAS_ENV_…)."""
    prefix = re.sub(r"[^A-Za-z0-9_]", "_", alias).upper()
    env = [f"{prefix}_NAME=/{me}/{alias}"]
    ports = sorted((other.r["Config"].get("ExposedPorts") or {}).keys(),
                   key=lambda k: int(k.split("/")[0]) if k.split("/")[0].isdigit() else 0)
    for i, key in enumerate(ports):
        port, _, proto = key.partition("/")
        proto = proto or "tcp"
        url = f"{proto}://{ip}:{port}"
        if i == 0:
            env.append(f"{prefix}_PORT={url}")
        base = f"{prefix}_PORT_{port}_{proto.upper()}"
        env += [f"{base}={url}", f"{base}_ADDR={ip}", f"{base}_PORT={port}",
                f"{base}_PROTO={proto}"]
    for item in other.r["Config"].get("Env") or []:
        name, eq, value = str(item).partition("=")
        if eq and name not in ("HOME", "PATH"):
            env.append(f"{prefix}_ENV_{name}={value}")
    return env


async def _settled(c: Container) -> None:
    """Wait until the end of the container's last run is fully recorded and undone
    (_finish runs in its monitor task, after ``exited`` is set)."""
    task = c.monitor
    if task is not None and task is not asyncio.current_task() and not task.done():
        await asyncio.shield(task)


def _snap(cid: str) -> str:
    return f"container-{cid}"


def _valid_name(name: str) -> bool:
    import re

    return bool(re.fullmatch(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+", name))


def _resolv_conf(host_text: str, host: dict[str, Any]) -> str:
    """The container's resolv.conf: the host's, with --dns, --dns-search and --dns-option
    each replacing the lines of their kind."""
    lines = host_text.splitlines()
    for key, kinds in (("Dns", ("nameserver",)), ("DnsSearch", ("search", "domain")),
                       ("DnsOptions", ("options",))):
        values = [str(x) for x in host.get(key) or []]
        if not values:
            continue
        lines = [line for line in lines if not line.split()[:1] or line.split()[0] not in kinds]
        lines += ([f"nameserver {x}" for x in values] if key == "Dns" else
                  [f"{kinds[0]} {' '.join(values)}"])
    return "\n".join(lines) + "\n" if lines else ""


def _merge_env(base: list[str], extra: list[str]) -> list[str]:
    out: dict[str, str] = {}
    for e in [*base, *extra]:
        out[e.split("=", 1)[0]] = e
    return list(out.values())


def _log_opts(host: dict[str, Any]) -> dict[str, Any]:
    cfg = (host.get("LogConfig") or {}).get("Config") or {}
    out: dict[str, Any] = {"max_size": 20_000_000, "max_file": 5}
    if cfg.get("max-size"):
        out["max_size"] = logfile.parse_size(str(cfg["max-size"]))
    if cfg.get("max-file"):
        out["max_file"] = int(cfg["max-file"])
    return out


def _signal(text: str) -> int:
    from matou.runtime.kill import parse_signal

    return parse_signal(str(text))


def _take_record(record: str) -> dict[str, Any] | None:
    """An exec helper's record of its process's exit, if there is one; from now on it is
    kept in the daemon's memory (healthchecks make many)."""
    if not record or not os.path.exists(record):
        return None
    status = _read_json(record)
    with contextlib.suppress(OSError):
        os.unlink(record)
    return status


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (OSError, ValueError):
        return {}


def _ts(text: str) -> float:
    return timestamps.parse(text) or 0.0


async def _open(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        with unixsock.short(path) as p:
            await asyncio.get_running_loop().sock_connect(s, p)
    except OSError:
        s.close()
        raise
    return await asyncio.open_unix_connection(sock=s)


async def _shim_call(sock: str, req: dict[str, Any],
                     timeout: float | None = 10) -> dict[str, Any] | None:
    try:
        reader, writer = await _open(sock)
    except OSError:
        return None
    try:
        writer.write(json.dumps(req).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        return json.loads(line) if line.strip() else None
    except (OSError, ValueError, TimeoutError):
        return None
    finally:
        writer.close()


def _mount_snapshot(images: ImageStore, key: str, target: str) -> None:
    for m in images.snapshots.mounts(key):
        if m.type == "bind":
            libc.mount(m.source, target, None, libc.MS_BIND | libc.MS_REC)
        else:
            libc.mount(m.source, target, m.type, 0, ",".join(m.options))


class ExecService:
    """`docker exec`: processes started in a running container by its shim."""

    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers
        self.execs: dict[str, dict[str, Any]] = {}

    def create(self, name: str, config: dict[str, Any]) -> str:
        c = self.containers.get(name)
        if not c.running:
            raise FailedPrecondition(f"Container {c.id} is not running")
        cmd = config.get("Cmd")
        if not cmd or not isinstance(cmd, list):
            raise InvalidArgument("No exec command specified")
        exec_id = uuid.uuid4().hex + uuid.uuid4().hex
        self.containers.warm_forks()
        self.execs[exec_id] = {"ID": exec_id, "ContainerID": c.id, "Config": config,
                               "Running": False, "ExitCode": None, "Pid": 0}
        self.containers.events.emit("container", f"exec_create: {' '.join(cmd)}", c.id,
                                    {"name": c.name, "execID": exec_id})
        return exec_id

    def get(self, exec_id: str) -> dict[str, Any]:
        ex = self.execs.get(exec_id)
        if ex is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return ex

    def _process(self, c: Container, config: dict[str, Any]) -> dict[str, Any]:
        spec_path = os.path.join(self.containers._rundir(c), "config.json")
        base = _read_json(spec_path).get("process") or {}
        rootfs = os.path.join(self.containers._dir(c), "rootfs")
        env = _merge_env(base.get("env") or [], config.get("Env") or [])
        process = dict(base)
        process.update({"args": list(config["Cmd"]), "env": env,
                        "terminal": bool(config.get("Tty")),
                        "cwd": config.get("WorkingDir") or base.get("cwd") or "/"})
        if config.get("User"):
            uid, gid, extra = specs.resolve_user(rootfs, config["User"])
            process["user"] = {"uid": uid, "gid": gid, "additionalGids": extra}
        if config.get("Privileged"):
            from matou.linux.caps import bounding

            caps = bounding()
            process["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
        process.pop("consoleSize", None)
        return process

    async def start(self, exec_id: str, detach: bool
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        ex = self.get(exec_id)
        if ex["Running"] or ex["ExitCode"] is not None:
            raise FailedPrecondition(f"exec {exec_id[:12]} has already run")
        c = self.containers.get(ex["ContainerID"])
        if not c.running:
            raise FailedPrecondition(f"Container {c.id} is not running")
        config = ex["Config"]
        # each exec has a helper of its own, forked by the fork server: the container's
        # resident supervisor stays small (and native)
        rundir = self.containers._rundir(c)
        sock, _ = exec_paths(rundir, exec_id)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            unixsock.bind(listener, sock)
            os.chmod(sock, 0o600)
            listener.listen(4)
            await asyncio.to_thread(self.containers.forks.spawn, {
                "kind": "exec", "dir": rundir, "id": c.id, "exec_id": exec_id,
                "runtime_root": self.containers.runtime_root}, (listener.fileno(),))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(sock)
            raise
        finally:
            listener.close()  # the helper has its own copy
        reader, writer = await _open(sock)
        writer.write(json.dumps({
            "cmd": "exec", "id": exec_id, "process": self._process(c, config),
            "tty": bool(config.get("Tty")),
            "stdin": bool(config.get("AttachStdin")) and not detach}).encode() + b"\n")
        await writer.drain()
        reply = json.loads(await reader.readline() or b"{}")
        if "error" in reply or "pid" not in reply:
            writer.close()
            msg = str(reply.get("error", "exec failed"))
            if "executable file not found" in msg or "no such file" in msg:
                raise NotFound(msg)  # the CLI maps this to exit code 127 as dockerd's
            raise FailedPrecondition(msg)
        ex.update({"Running": True, "Pid": reply["pid"]})
        self.containers.events.emit("container", "exec_start: " + " ".join(config["Cmd"]),
                                    c.id, {"name": c.name, "execID": exec_id})
        if detach:
            writer.close()
            return None
        return reader, writer

    async def refresh(self, exec_id: str) -> dict[str, Any]:
        ex = self.get(exec_id)
        if ex["Running"]:
            c = self.containers.containers.get(ex["ContainerID"])
            sock, record = exec_paths(self.containers._rundir(c), exec_id) if c else ("", "")
            # the helper records the exit before it ends the stream: once the client saw
            # the end, the record is there and the helper need not be asked
            status = _take_record(record)
            if status is None and sock and os.path.exists(sock):
                status = await _shim_call(sock, {"cmd": "exec-status", "id": exec_id})
                if status is None:
                    status = _take_record(record)  # it ended meanwhile
            if status is None or status.get("exit") is not None:
                ex["Running"] = False
                ex["ExitCode"] = 137 if status is None or status.get("exit") is None \
                    else status["exit"]
        return ex

    async def resize(self, exec_id: str, h: int, w: int) -> None:
        ex = self.get(exec_id)
        c = self.containers.get(ex["ContainerID"])
        sock, _ = exec_paths(self.containers._rundir(c), exec_id)
        await _shim_call(sock, {"cmd": "exec-resize", "id": exec_id, "h": h, "w": w})


# -- more of Docker's verbs on a container ---------------------------------------------------

async def pause(svc: ContainerService, name: str, frozen: bool) -> None:
    from matou.runtime.pause import pause as rt_pause
    from matou.runtime.pause import resume as rt_resume
    from matou.runtime.store import Store

    c = svc.get(name)
    if not c.running:
        raise FailedPrecondition(f"Container {c.id} is not running")
    if c.state.get("Paused") == frozen:
        raise FailedPrecondition(f"Container {c.id} is {'already' if frozen else 'not'} paused")
    await asyncio.to_thread(rt_pause if frozen else rt_resume, Store(svc.runtime_root), c.id)
    c.state["Paused"] = frozen
    c.state["Status"] = "paused" if frozen else "running"
    svc._save(c)
    svc.events.emit("container", "pause" if frozen else "unpause", c.id,
                    {"name": c.name, "image": c.r["ImageName"]})


async def top(svc: ContainerService, name: str, ps_args: str) -> dict[str, Any]:
    from matou.runtime.ps import pids
    from matou.runtime.store import Store

    c = svc.get(name)
    if not c.running:
        raise FailedPrecondition(f"Container {c.id} is not running")
    wanted = set(await asyncio.to_thread(pids, Store(svc.runtime_root), c.id))
    args = ps_args.split() if ps_args else ["-ef"]
    proc = await asyncio.create_subprocess_exec("ps", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise InvalidArgument(f"ps: {err.decode().strip()}")
    lines = out.decode().splitlines()
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument("Couldn't find PID field in ps output")
    col = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            rows.append(fields)
    return {"Titles": titles, "Processes": rows}


async def rename(svc: ContainerService, name: str, new: str) -> None:
    c = svc.get(name)
    if not _valid_name(new):
        raise InvalidArgument(f"Invalid container name ({new})")
    if any(o.name == new.lstrip("/") for o in svc.containers.values() if o is not c):
        raise AlreadyExists(f'Conflict. The container name "/{new.lstrip("/")}" is already '
                            "in use")
    old = c.name
    c.r["Name"] = "/" + new.lstrip("/")
    svc._save(c)
    svc.events.emit("container", "rename", c.id, {"name": c.name, "oldName": "/" + old})


def rw_size(svc: ContainerService, c: Container) -> int:
    """The bytes of the container's own layer (Docker's SizeRw)."""
    try:
        return svc.images.snapshots.usage(_snap(c.id))[0]
    except (MatouError, OSError):
        return 0


def sizes(svc: ContainerService, c: Container) -> tuple[int, int]:
    """Docker's SizeRw and SizeRootFs: the container's own layer, and that with its
    image's (0 for an image gone meanwhile)."""
    rw = rw_size(svc, c)
    try:
        return rw, rw + svc.images.get(c.r["Image"]).size
    except MatouError:
        return rw, rw


def changes(svc: ContainerService, name: str) -> list[dict[str, Any]]:
    """`docker diff`: Kind 0 modified, 1 added, 2 deleted — from the container's own
    snapshot dir (overlay upper, whiteouts as 0:0 char devices)."""
    import stat as st

    c = svc.get(name)
    upper = svc.images.snapshots.fs_dir(_snap(c.id))
    parent = svc.images.snapshots.stat(_snap(c.id)).parent
    lowers = [svc.images.snapshots.fs_dir(i.name) for i in
              svc.images.snapshots.chain(parent)] if parent else []
    out: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(upper):
        for n in sorted(dirnames + filenames):
            full = os.path.join(dirpath, n)
            rel = "/" + os.path.relpath(full, upper)
            s = os.lstat(full)
            if st.S_ISCHR(s.st_mode) and s.st_rdev == 0:
                out.append({"Path": rel, "Kind": 2})
                continue
            in_lower = any(os.path.lexists(os.path.join(lo, rel.lstrip("/"))) for lo in lowers)
            out.append({"Path": rel, "Kind": 0 if in_lower else 1})
    # the files the daemon binds into every container are not the container's changes
    hidden = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
    out = [x for x in out if x["Path"] not in hidden]
    if not any(x["Path"].startswith("/etc/") for x in out):
        out = [x for x in out if not (x["Path"] == "/etc" and x["Kind"] == 0)]
    return sorted(out, key=lambda x: x["Path"])


def _system_cpu_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * 10**9 // os.sysconf("SC_CLK_TCK")


def _sample(svc: ContainerService, c: Container) -> dict[str, Any]:
    from matou.cgroups import Manager
    from matou.errors import MatouError

    cg = Manager(specs.cgroup_path(c.id, c.r["HostConfig"].get("CgroupParent")))

    def read(ctrl: str, name: str) -> str:
        try:
            return cg.read(ctrl, name)
        except MatouError:
            return ""

    percpu = [int(x) for x in read("cpuacct", "cpuacct.usage_percpu").split()]
    ticks = dict(line.split() for line in read("cpuacct", "cpuacct.stat").splitlines()
                 if line.strip())
    hz = os.sysconf("SC_CLK_TCK")
    mem_stat = {k: int(v) for k, v in (line.split() for line in
                                       read("memory", "memory.stat").splitlines() if line)}
    usage = int(read("memory", "memory.usage_in_bytes") or 0)
    limit = int(read("memory", "memory.limit_in_bytes") or 0)
    return {
        "read": _now(),
        "pids_stats": {"current": int(read("pids", "pids.current") or 0)},
        "cpu_stats": {
            "cpu_usage": {"total_usage": int(read("cpuacct", "cpuacct.usage") or 0),
                          "percpu_usage": percpu,
                          "usage_in_usermode": int(ticks.get("user", 0)) * 10**9 // hz,
                          "usage_in_kernelmode": int(ticks.get("system", 0)) * 10**9 // hz},
            "system_cpu_usage": _system_cpu_ns(), "online_cpus": len(percpu) or 1,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "memory_stats": {"usage": usage,
                         "max_usage": int(read("memory", "memory.max_usage_in_bytes") or 0),
                         "stats": mem_stat,
                         "limit": min(limit, mem_total()) if limit else mem_total()},
        "blkio_stats": {"io_service_bytes_recursive": None},
        "networks": {},
        "name": "/" + c.name, "id": c.id,
    }


def mem_total() -> int:
    """The host's memory, bytes (the first line of /proc/meminfo is MemTotal)."""
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) * 1024


async def stats(svc: ContainerService, name: str, interval: float = 0.5
                ) -> AsyncIterator[dict[str, Any]]:
    """Docker's stats objects, each carrying the previous sample as precpu_stats."""
    c = svc.get(name)
    empty: dict[str, Any] = {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0}
    prev = await asyncio.to_thread(_sample, svc, c) if c.running else None
    while True:
        await asyncio.sleep(interval)
        if not c.running:
            return
        cur = await asyncio.to_thread(_sample, svc, c)
        cur["preread"] = prev["read"] if prev else "0001-01-01T00:00:00Z"
        cur["precpu_stats"] = prev["cpu_stats"] if prev else empty
        yield cur
        prev = cur


# -- healthchecks -----------------------------------------------------------------------------

_HEALTH_LOG = 5


async def _probe(svc: ContainerService, c: Container, test: list[str],
                 timeout: float) -> tuple[int, str]:
    """Run the healthcheck command in the container; (exit code, output)."""
    shell = test[0] == "CMD-SHELL"
    cmd = ["/bin/sh", "-c", " ".join(test[1:])] if shell else list(test[1:])
    execs = ExecService(svc)
    exec_id = execs.create(c.id, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
    try:
        conn = await execs.start(exec_id, detach=False)
    except (FailedPrecondition, NotFound) as e:
        return 1, str(e)
    assert conn is not None
    reader, writer = conn
    out = b""
    try:
        async with asyncio.timeout(timeout):
            while data := await reader.read(65536):
                out += data
    except TimeoutError:
        writer.close()
        return -1, f"Health check exceeded timeout ({timeout:g}s)"
    writer.close()
    text = b""
    while len(out) >= 8:  # multiplexed frames
        size = int.from_bytes(out[4:8], "big")
        text += out[8:8 + size]
        out = out[8 + size:]
    for _ in range(50):
        ex = await execs.refresh(exec_id)
        if ex["ExitCode"] is not None:
            return int(ex["ExitCode"]), text.decode(errors="replace")[:4096]
        await asyncio.sleep(0.02)
    return 1, text.decode(errors="replace")[:4096]


async def healthcheck(svc: ContainerService, c: Container) -> None:
    """Docker's healthcheck loop for one run of a container."""
    hc = c.r["Config"].get("Healthcheck") or {}
    test = hc.get("Test") or []
    if not test or test[0] == "NONE" or len(test) < 2:
        return
    interval = (hc.get("Interval") or 30 * 10**9) / 1e9
    timeout = (hc.get("Timeout") or 30 * 10**9) / 1e9
    retries = int(hc.get("Retries") or 3)
    start_period = (hc.get("StartPeriod") or 0) / 1e9
    started = time.monotonic()
    health: dict[str, Any] = {"Status": "starting", "FailingStreak": 0, "Log": []}
    c.state["Health"] = health
    svc._save(c)
    while c.running:
        await asyncio.sleep(interval)
        if not c.running:
            return
        begin = _now()
        code, output = await _probe(svc, c, test, timeout)
        health["Log"] = [*health["Log"], {"Start": begin, "End": _now(), "ExitCode": code,
                                          "Output": output}][-_HEALTH_LOG:]
        before = health["Status"]
        if code == 0:
            health["Status"], health["FailingStreak"] = "healthy", 0
        elif time.monotonic() - started >= start_period:
            health["FailingStreak"] += 1
            if health["FailingStreak"] >= retries:
                health["Status"] = "unhealthy"
        svc._save(c)
        if health["Status"] != before:
            svc.events.emit("container", f"health_status: {health['Status']}", c.id,
                            {"name": c.name, "image": c.r["ImageName"]})


_UPDATABLE = ("Memory", "MemorySwap", "MemoryReservation", "CpuShares", "NanoCpus", "CpuQuota",
              "CpuPeriod", "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight",
              "RestartPolicy")


async def update(svc: ContainerService, name: str, changes: dict[str, Any]) -> list[str]:
    """`docker update`: new limits for a container, applied to its cgroup when it runs."""
    from matou.runtime.store import Store
    from matou.runtime.update import update as rt_update

    c = svc.get(name)
    unknown = [k for k, v in changes.items() if v not in (None, 0, "", {}) and
               k not in _UPDATABLE]
    if unknown:
        raise InvalidArgument(f"cannot update {', '.join(sorted(unknown))}")
    host = dict(c.r["HostConfig"])
    for k in _UPDATABLE:
        value = changes.get(k)
        if value in (None, "", {}, 0):
            continue  # the CLI sends every field; zero means "leave as it is"
        if k == "RestartPolicy" and not (value or {}).get("Name"):
            continue
        host[k] = value
    policy = (host.get("RestartPolicy") or {}).get("Name") or "no"
    if host.get("AutoRemove") and policy != "no":
        raise InvalidArgument("can't update the restart policy of an 'AutoRemove' container")
    if c.running:
        resources = specs.resources_of(host)
        await asyncio.to_thread(rt_update, Store(svc.runtime_root), c.id, resources)
    c.r["HostConfig"] = host
    svc._save(c)
    svc.events.emit("container", "update", c.id, {"name": c.name})
    return []
