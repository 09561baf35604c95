"""A Docker container's configuration turned into an OCI runtime spec, with Docker's
defaults: 14 capabilities, masked and read-only /proc paths, the default mounts and
devices, /etc/hosts, /etc/hostname and /etc/resolv.conf bound from the container's dir.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from matou.engine import seccomp_profile
from matou.errors import InvalidArgument

DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
MASKED = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _mounts(shm_size: int, privileged: bool) -> list[dict[str, Any]]:
    ro = [] if privileged else ["ro"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", *ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", *ro]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]},
    ]


def _lookup(rootfs: str, path: str, name: str, field: int) -> int | None:
    try:
        with open(os.path.join(rootfs, path.lstrip("/"))) as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) > field and parts[0] == name:
                    return int(parts[field])
    except (OSError, ValueError):
        return None
    return None


def resolve_user(rootfs: str, user: str) -> tuple[int, int, list[int]]:
    """Docker's `-u`: name or uid, optionally :group or :gid, looked up in the rootfs's
    /etc/passwd and /etc/group (which are the container's, never the host's)."""
    if not user:
        return 0, 0, []
    name, _, group = user.partition(":")
    if name.isdigit():
        uid = int(name)
        gid = _gid_of_uid(rootfs, uid)
    else:
        found = _lookup(rootfs, "/etc/passwd", name, 2)
        if found is None:
            raise InvalidArgument(f"unable to find user {name}: no matching entries in "
                                  "passwd file")
        uid = found
        gid = _lookup(rootfs, "/etc/passwd", name, 3) or 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = _lookup(rootfs, "/etc/group", group, 2)
            if g is None:
                raise InvalidArgument(f"unable to find group {group}: no matching entries in "
                                      "group file")
            gid = g
    extra = []
    if not name.isdigit():
        try:
            with open(os.path.join(rootfs, "etc/group")) as f:
                for line in f:
                    parts = line.rstrip("\n").split(":")
                    if len(parts) >= 4 and name in parts[3].split(",") and parts[2].isdigit():
                        extra.append(int(parts[2]))
        except OSError:
            pass
    return uid, gid, extra


def _gid_of_uid(rootfs: str, uid: int) -> int:
    try:
        with open(os.path.join(rootfs, "etc/passwd")) as f:
            for line in f:
                parts = line.split(":")
                if len(parts) > 3 and parts[2] == str(uid):
                    return int(parts[3])
    except (OSError, ValueError):
        pass
    return 0


# the sysctls a container may set: those of the namespaces it has of its own
NAMESPACED_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni",
                                "kernel.sem", "kernel.shmall", "kernel.shmmax",
                                "kernel.shmmni", "kernel.shm_rmid_forced"})
NAMESPACED_PREFIXES = ("fs.mqueue.", "net.")
BLKIO_THROTTLES = {"BlkioDeviceReadBps": "throttleReadBpsDevice",
                   "BlkioDeviceWriteBps": "throttleWriteBpsDevice",
                   "BlkioDeviceReadIOps": "throttleReadIOPSDevice",
                   "BlkioDeviceWriteIOps": "throttleWriteIOPSDevice"}
BLKIO_ROOT = "/sys/fs/cgroup/blkio"
NAMESPACE_MODES = {"PidMode": ("pid", ("", "host")),
                   "IpcMode": ("ipc", ("", "host", "private", "shareable", "none")),
                   "UTSMode": ("uts", ("", "host"))}


def cgroup_path(container_id: str, parent: object = None) -> str:
    """The container's cgroup: /matou/ID, or PARENT/ID (--cgroup-parent, cgroupfs style,
    relative to the hierarchy's root)."""
    base = "/" + str(parent).strip("/") if parent else "/matou"
    return f"{base.rstrip('/')}/{container_id}"


def check_host(host: dict[str, Any]) -> None:
    """Refuse at create what Docker refuses there: sysctls outside the container's own
    namespaces, namespace modes it does not know, devices that are not there."""
    network_host = host.get("NetworkMode") == "host"
    parent = str(host.get("CgroupParent") or "")
    if parent and (".." in parent.split("/") or parent.endswith(".slice")):
        raise InvalidArgument(f"invalid cgroup parent {parent!r}: a cgroupfs path without "
                              "'..' (systemd slices need the systemd cgroup driver)")
    for key in host.get("Sysctls") or {}:
        if not (key in NAMESPACED_SYSCTLS or key.startswith(NAMESPACED_PREFIXES)):
            raise InvalidArgument(f"sysctl '{key}' is not allowed")
        if key.startswith("net.") and network_host:
            raise InvalidArgument(f"sysctl '{key}' not allowed in host network namespace")
    if str(host.get("CgroupnsMode") or "") not in ("", "host", "private"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {host['CgroupnsMode']}")
    if str(host.get("UsernsMode") or "") not in ("", "host"):
        raise InvalidArgument(f"invalid USER mode: {host['UsernsMode']} (matou remaps no "
                              "user namespaces: only 'host' is known)")
    for key in BLKIO_THROTTLES:
        for entry in host.get(key) or []:
            _block_device(entry, key)
    for key, (kind, modes) in NAMESPACE_MODES.items():
        mode = str(host.get(key) or "")
        if mode not in modes and not (kind != "uts" and mode.startswith("container:")
                                      and mode != "container:"):
            raise InvalidArgument(f"invalid {kind.upper()} mode: {mode}")
    devices(host)


def _block_device(entry: Any, key: str) -> tuple[int, int, int]:
    """A {Path, Rate} of the Blkio* lists: the device's numbers and the rate."""
    if not isinstance(entry, dict) or not entry.get("Path"):
        raise InvalidArgument(f"{key}: entries are {{\"Path\": …, \"Rate\": …}}")
    try:
        st = os.stat(str(entry["Path"]))
        rate = int(entry.get("Rate") or 0)
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"{key}: {entry.get('Path')}: {e}") from e
    if not stat.S_ISBLK(st.st_mode):
        raise InvalidArgument(f"{key}: {entry['Path']} is not a block device")
    return os.major(st.st_rdev), os.minor(st.st_rdev), rate


def warnings(host: dict[str, Any]) -> list[str]:
    """What create drops and says so, as dockerd does on a kernel without it."""
    out = []
    weighted = host.get("BlkioWeight") or host.get("BlkioWeightDevice")
    if weighted and not any(os.path.exists(os.path.join(BLKIO_ROOT, f))
                            for f in ("blkio.weight", "blkio.bfq.weight")):
        out.append("Your kernel does not support Block I/O weight or the cgroup is not "
                   "mounted. Weight discarded.")
    return out


def devices(host: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """HostConfig.Devices as OCI device nodes and the cgroup rules that allow them; a
    directory brings every device node beneath it, as in Docker."""
    nodes: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for d in host.get("Devices") or []:
        if not isinstance(d, dict) or not d.get("PathOnHost"):
            raise InvalidArgument("a device needs PathOnHost")
        src = str(d["PathOnHost"])
        dst = str(d.get("PathInContainer") or src)
        access = str(d.get("CgroupPermissions") or "rwm")
        if not access or set(access) - set("rwm"):
            raise InvalidArgument(f"invalid device cgroup permissions: {access}")
        try:
            top = os.stat(src)
        except OSError as e:
            raise InvalidArgument(f'error gathering device information while adding custom '
                                  f'device "{src}": {(e.strerror or str(e)).lower()}') from e
        found = [(src, dst, top)]
        if stat.S_ISDIR(top.st_mode):
            found = []
            for root, _, names in os.walk(src):
                for name in sorted(names):
                    path = os.path.join(root, name)
                    try:
                        st = os.lstat(path)
                    except OSError:
                        continue
                    found.append((path, os.path.join(dst, os.path.relpath(path, src)), st))
        for path, target, st in found:
            kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else ""
            if not kind:
                if path == src:
                    raise InvalidArgument(f'error gathering device information while adding '
                                          f'custom device "{src}": not a device node')
                continue
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
            nodes.append({"path": target, "type": kind, "major": major, "minor": minor,
                          "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
                          "gid": st.st_gid})
            rules.append({"allow": True, "type": kind, "major": major, "minor": minor,
                          "access": access})
    return nodes, rules


def build(container_id: str, config: dict[str, Any], host: dict[str, Any],
          image_config: dict[str, Any], rootfs: str, files: dict[str, str],
          volumes: list[dict[str, Any]] | None = None, netns: str | None = None,
          joins: dict[str, str] | None = None, seccomp_default: str = ""
          ) -> dict[str, Any]:
    """The OCI spec of a container (``files`` maps /etc/hosts etc. to host paths;
    ``netns`` is the network namespace to join, None for a new one; ``joins`` maps pid,
    ipc and uts to another container's namespace path, or to "host" for none of its
    own)."""
    # an Entrypoint given at create time drops the image's Cmd too, as in Docker
    if config.get("Entrypoint") is not None:
        entry, cmd = config["Entrypoint"], config.get("Cmd") or []
    else:
        entry = image_config.get("Entrypoint") or []
        cmd = config.get("Cmd") or image_config.get("Cmd") or []
    args = [a for a in [*entry, *cmd]]
    if args[:1] == [""]:
        args = args[1:]
    if not args:
        raise InvalidArgument("no command specified")
    env = _env([*(image_config.get("Env") or []), *(config.get("Env") or [])])
    hostname = config.get("Hostname") or container_id[:12]
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    env.append(f"HOSTNAME={hostname}")
    if config.get("Tty") and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    privileged = bool(host.get("Privileged"))
    uid, gid, extra = resolve_user(rootfs, config.get("User") or image_config.get("User") or "")
    caps = _caps(host, privileged)
    security = host.get("SecurityOpt") or []
    process: dict[str, Any] = {
        "terminal": bool(config.get("Tty")), "args": args, "env": env,
        "cwd": config.get("WorkingDir") or image_config.get("WorkingDir") or "/",
        "user": {"uid": uid, "gid": gid, "additionalGids": sorted({*extra, *(
            int(g) for g in host.get("GroupAdd") or [] if str(g).isdigit())})},
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": any(s in ("no-new-privileges", "no-new-privileges:true",
                                     "no-new-privileges=true") for s in security),
    }
    if host.get("OomScoreAdj"):
        process["oomScoreAdj"] = int(host["OomScoreAdj"])
    rlimits = []
    for u in host.get("Ulimits") or []:
        rlimits.append({"type": f"RLIMIT_{str(u['Name']).upper()}", "soft": int(u["Soft"]),
                        "hard": int(u["Hard"])})
    if rlimits:
        process["rlimits"] = rlimits
    mounts = _mounts(int(host.get("ShmSize") or 64 << 20), privileged)
    for dest, src in files.items():
        mounts.append({"destination": dest, "type": "bind", "source": src,
                       "options": ["rbind", "rprivate"]})
    for t, opts in (host.get("Tmpfs") or {}).items():
        mounts.append({"destination": t, "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "noexec", *[o for o in opts.split(",")
                                                                   if o]]})
    for m in (host.get("Mounts") or []):
        if m.get("Type") == "tmpfs":  # --mount type=tmpfs
            opts = m.get("TmpfsOptions") or {}
            sized = [f"size={int(opts['SizeBytes'])}"] if opts.get("SizeBytes") else []
            if opts.get("Mode"):
                sized.append(f"mode={int(opts['Mode']):o}")
            mounts.append({"destination": m.get("Target"), "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "noexec", *sized,
                                       *(["ro"] if m.get("ReadOnly") else [])]})
    for m in volumes or []:
        source = m["Source"]
        if m.get("Subpath"):
            from matou.linux.mount import secure_join

            source = secure_join(source, m["Subpath"])
            if not os.path.exists(source):
                raise InvalidArgument(f"cannot access path {source}: subpath does not exist "
                                      "in the volume")
        mounts.append({"destination": m["Destination"], "type": "bind", "source": source,
                       "options": ["rbind", "rw" if m["RW"] else "ro",
                                   m.get("Propagation") or "rprivate"]})
    joins = joins or {}
    namespaces = [{"type": t, "path": joins[t]} if joins.get(t) else {"type": t}
                  for t in ("pid", "ipc", "uts", "mount") if joins.get(t) != "host"]
    if host.get("CgroupnsMode") == "private":  # the host's, by default on cgroup v1
        namespaces.append({"type": "cgroup"})
    mode = host.get("NetworkMode") or "default"
    if mode != "host":
        namespaces.append({"type": "network", "path": netns} if netns else {"type": "network"})
    resources = _resources(host, privileged)
    nodes, rules = devices(host)
    resources["devices"] += rules
    spec: dict[str, Any] = {
        "ociVersion": "1.2.0", "process": process,
        "root": {"path": rootfs, "readonly": bool(host.get("ReadonlyRootfs"))},
        "hostname": hostname, "mounts": mounts,
        "linux": {"namespaces": namespaces,
                  "cgroupsPath": cgroup_path(container_id, host.get("CgroupParent")),
                  "resources": resources,
                  "maskedPaths": [] if privileged else list(MASKED),
                  "readonlyPaths": [] if privileged else list(READONLY)},
    }
    if nodes:
        spec["linux"]["devices"] = nodes
    if host.get("Sysctls"):
        spec["linux"]["sysctl"] = {str(k): str(v) for k, v in host["Sysctls"].items()}
    seccomp = seccomp_profile.for_container(security, caps, privileged, seccomp_default)
    if seccomp is not None:
        spec["linux"]["seccomp"] = seccomp
    if mode == "host" or joins.get("uts"):  # the hostname is the namespace's owner's
        spec.pop("hostname")
    return spec


def _env(items: list[str]) -> list[str]:
    out: dict[str, str] = {}
    for e in items:
        k, eq, v = e.partition("=")
        out[k] = f"{k}={v}" if eq else k
    return list(out.values())


def _caps(host: dict[str, Any], privileged: bool) -> list[str]:
    from matou.linux.caps import bounding

    if privileged:
        return bounding()
    caps = list(DEFAULT_CAPS)

    def norm(c: str) -> str:
        c = c.upper()
        return c if c.startswith("CAP_") else "CAP_" + c

    adds = [norm(c) for c in host.get("CapAdd") or []]
    drops = [norm(c) for c in host.get("CapDrop") or []]
    if "CAP_ALL" in adds:
        caps = bounding()
    caps += [c for c in adds if c != "CAP_ALL" and c not in caps]
    if "CAP_ALL" in drops:
        caps = [c for c in caps if c in adds]
    return [c for c in caps if c not in drops]


def parse_mounts(config: dict[str, Any], host: dict[str, Any]) -> list[dict[str, Any]]:
    """Docker's mount records from -v (Binds), --mount (Mounts) and VOLUME entries:
    {Type bind|volume, Name, Source, Destination, RW, Propagation}; a volume's Source is
    filled in by the caller. A VOLUME not covered by another mount is anonymous."""
    out: list[dict[str, Any]] = []
    for spec in host.get("Binds") or []:
        parts = str(spec).split(":")
        if len(parts) < 2 or not parts[1].startswith("/"):
            raise InvalidArgument(f"invalid volume specification: '{spec}'")
        src, dest = parts[0], parts[1]
        opts = parts[2].split(",") if len(parts) > 2 else []
        prop = next((o for o in opts if o in ("rprivate", "private", "rshared", "shared",
                                              "rslave", "slave")), "rprivate")
        kind = "bind" if src.startswith("/") else "volume"
        out.append({"Type": kind, "Name": "" if kind == "bind" else src,
                    "Source": src if kind == "bind" else "", "Destination": dest,
                    "RW": "ro" not in opts, "Propagation": prop, "Create": kind == "bind"})
    for m in host.get("Mounts") or []:
        kind = m.get("Type", "volume")
        if kind not in ("bind", "volume"):
            continue  # tmpfs mounts are made at start (tmpfs_mounts)
        target = m.get("Target") or ""
        if not target.startswith("/"):
            raise InvalidArgument("invalid mount config: target must be an absolute path")
        subpath = str((m.get("VolumeOptions") or {}).get("Subpath") or "")
        if subpath and (subpath.startswith("/") or ".." in subpath.split("/")):
            raise InvalidArgument(f"invalid mount config: subpath {subpath!r} must be "
                                  "relative and stay inside the volume")
        out.append({"Type": kind, "Name": m.get("Source", "") if kind == "volume" else "",
                    "Source": m.get("Source", "") if kind == "bind" else "",
                    "Destination": target, "RW": not m.get("ReadOnly"),
                    "Propagation": ((m.get("BindOptions") or {}).get("Propagation")
                                    or "rprivate"), "Create": False,
                    **({"Subpath": subpath} if subpath else {})})
    taken = {x["Destination"] for x in out}
    for dest in (config.get("Volumes") or {}):
        if dest not in taken:
            out.append({"Type": "volume", "Name": "", "Source": "", "Destination": dest,
                        "RW": True, "Propagation": "", "Create": False})
    return out


def resources_of(host: dict[str, Any]) -> dict[str, Any]:
    """The cgroup limits of a HostConfig, without the device rules (for `update`)."""
    r = _resources(host, bool(host.get("Privileged")))
    r.pop("devices", None)
    return r


def _resources(host: dict[str, Any], privileged: bool) -> dict[str, Any]:
    r: dict[str, Any] = {"devices": [{"allow": privileged, "access": "rwm"}]}
    mem: dict[str, Any] = {}
    if host.get("Memory"):
        mem["limit"] = int(host["Memory"])
        swap = host.get("MemorySwap")
        if swap:
            mem["swap"] = int(swap)
    if host.get("MemoryReservation"):
        mem["reservation"] = int(host["MemoryReservation"])
    if mem:
        r["memory"] = mem
    cpu: dict[str, Any] = {}
    if host.get("CpuShares"):
        cpu["shares"] = int(host["CpuShares"])
    if host.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = int(host["NanoCpus"]) * 100000 // 10**9
    if host.get("CpuQuota"):
        cpu["quota"] = int(host["CpuQuota"])
    if host.get("CpuPeriod"):
        cpu["period"] = int(host["CpuPeriod"])
    if host.get("CpusetCpus"):
        cpu["cpus"] = str(host["CpusetCpus"])
    if host.get("CpusetMems"):
        cpu["mems"] = str(host["CpusetMems"])
    if cpu:
        r["cpu"] = cpu
    if host.get("PidsLimit"):
        r["pids"] = {"limit": int(host["PidsLimit"])}
    blkio: dict[str, Any] = {}
    if not warnings({"BlkioWeight": 1}):  # weights only where the kernel has them
        if host.get("BlkioWeight"):
            blkio["weight"] = int(host["BlkioWeight"])
        weights = []
        for e in host.get("BlkioWeightDevice") or []:
            major, minor, _ = _block_device({"Path": e.get("Path"), "Rate": 0},
                                            "BlkioWeightDevice")
            weights.append({"major": major, "minor": minor, "weight": int(e["Weight"])})
        if weights:
            blkio["weightDevice"] = weights
    for key, oci in BLKIO_THROTTLES.items():
        rates = []
        for e in host.get(key) or []:
            major, minor, rate = _block_device(e, key)
            rates.append({"major": major, "minor": minor, "rate": rate})
        if rates:
            blkio[oci] = rates
    if blkio:
        r["blockIO"] = blkio
    return r
