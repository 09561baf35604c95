"""Docker semantics: containers, exec, images, networks, volumes, events; async; no HTTP.

May import: images, registry, network, shim, runtime, content, snapshots, archive,
cgroups, linux, oci, errors.
"""

from __future__ import annotations

import os
import platform
import socket
import time
import uuid
from typing import NamedTuple

from matou.engine.containers import ContainerService, ExecService, mem_total
from matou.engine.events import EventBus
from matou.engine.images import ImageService
from matou.engine.networks import NetworkService
from matou.engine.volumes import VolumeService
from matou.images.setup import open_store
from matou.shim.forkserver import ForkServer


class Config(NamedTuple):
    data_root: str = "/var/lib/matou"
    exec_root: str = "/run/matou"
    snapshotter: str = "auto"
    debug: bool = False
    labels: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[str, ...] = ()
    live_restore: bool = True
    bridge: str = "matou0"       # the default bridge's link name; "none": no bridge
    bip: str = ""                # its gateway address/prefix; "": the first free pool
    seccomp_profile: str = ""    # the default profile: "" (Docker's), "unconfined", or JSON
    ipv6: bool = False           # IPv6 on the default bridge
    fixed_cidr_v6: str = ""      # its /64 ("": a unique local one)


class Engine:
    """The composition of every service the API exposes."""

    def __init__(self, config: Config, forks: ForkServer) -> None:
        self.config = config
        self.started = time.time()
        self.events = EventBus()
        os.makedirs(config.data_root, 0o711, exist_ok=True)
        self.id = _daemon_id(config.data_root)
        self.images = ImageService(open_store(config.data_root, config.snapshotter),
                                   self.events)
        self.volumes = VolumeService(config.data_root, self.events)
        self.networks = NetworkService(config.data_root, config.exec_root, self.events,
                                       config.bridge, config.bip, config.ipv6,
                                       config.fixed_cidr_v6)
        self.containers = ContainerService(config.data_root, config.exec_root,
                                           self.images.store, self.events, forks,
                                           self.volumes, self.networks)
        self.containers.seccomp_default = config.seccomp_profile
        self.execs = ExecService(self.containers)

    def info_host(self) -> dict[str, object]:
        u = os.uname()
        return {"hostname": socket.gethostname(), "kernel": u.release, "arch": u.machine,
                "os": _os_release(), "ncpu": os.cpu_count() or 1, "mem": mem_total(),
                "python": platform.python_version()}


def _daemon_id(root: str) -> str:
    path = os.path.join(root, "engine-id")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        ident = str(uuid.uuid4())
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(ident)
        os.rename(tmp, path)
        return ident


def _os_release() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"
