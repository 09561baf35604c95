"""Typed records of the OCI runtime spec (config.json) and their parser.

Records are NamedTuples rather than frozen dataclasses: every runtime command parses a
spec, and generating dataclass methods costs milliseconds at import on that path.

Parsing checks types field by field and names the offending path in its error
(``config.json: process.user.uid: expected integer``); unknown fields are kept in
the raw dict but ignored, as the spec asks. Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from matou.errors import InvalidArgument

SUPPORTED_VERSION_PREFIX = "1."

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")


class _Reader:
    """Type-checked access to one JSON object, reporting errors by dotted path."""

    def __init__(self, obj: Any, path: str) -> None:
        if not isinstance(obj, dict):
            raise InvalidArgument(f"config.json: {path or 'top level'}: expected object")
        self.obj: dict[str, Any] = obj
        self.path = path

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, kinds: tuple[type, ...], kind_name: str, default: Any) -> Any:
        v = self.obj.get(key)
        if v is None:
            return default
        if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
            raise InvalidArgument(f"config.json: {self._where(key)}: expected {kind_name}")
        return v

    def text(self, key: str, default: str = "") -> str:
        v: str = self._get(key, (str,), "string", default)
        return v

    def integer(self, key: str, default: int | None = None) -> int | None:
        v: int | None = self._get(key, (int,), "integer", default)
        return v

    def flag(self, key: str, default: bool = False) -> bool:
        v: bool = self._get(key, (bool,), "boolean", default)
        return v

    def texts(self, key: str) -> tuple[str, ...]:
        v = self._get(key, (list,), "array of strings", [])
        if not all(isinstance(s, str) for s in v):
            raise InvalidArgument(f"config.json: {self._where(key)}: expected array of strings")
        return tuple(v)

    def objs(self, key: str) -> list[_Reader]:
        v = self._get(key, (list,), "array of objects", [])
        return [_Reader(o, f"{self._where(key)}[{i}]") for i, o in enumerate(v)]

    def sub(self, key: str) -> _Reader | None:
        v = self.obj.get(key)
        if v is None:
            return None
        return _Reader(v, self._where(key))

    def str_map(self, key: str) -> dict[str, str]:
        v = self._get(key, (dict,), "object of strings", {})
        if not all(isinstance(s, str) for s in v.values()):
            raise InvalidArgument(f"config.json: {self._where(key)}: expected object of strings")
        return dict(v)


class User(NamedTuple):
    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: tuple[int, ...] = ()


class Rlimit(NamedTuple):
    type: str
    soft: int
    hard: int


class Capabilities(NamedTuple):
    bounding: tuple[str, ...] = ()
    effective: tuple[str, ...] = ()
    inheritable: tuple[str, ...] = ()
    permitted: tuple[str, ...] = ()
    ambient: tuple[str, ...] = ()


class ConsoleSize(NamedTuple):
    height: int
    width: int


class Process(NamedTuple):
    args: tuple[str, ...]
    cwd: str
    env: tuple[str, ...] = ()
    terminal: bool = False
    console_size: ConsoleSize | None = None
    user: User = User()
    capabilities: Capabilities | None = None
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    apparmor_profile: str = ""
    selinux_label: str = ""
    oom_score_adj: int | None = None


class Root(NamedTuple):
    path: str
    readonly: bool = False


class Mount(NamedTuple):
    destination: str
    type: str = ""
    source: str = ""
    options: tuple[str, ...] = ()


class Hook(NamedTuple):
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


class Hooks(NamedTuple):
    prestart: tuple[Hook, ...] = ()
    create_runtime: tuple[Hook, ...] = ()
    create_container: tuple[Hook, ...] = ()
    start_container: tuple[Hook, ...] = ()
    poststart: tuple[Hook, ...] = ()
    poststop: tuple[Hook, ...] = ()


class Namespace(NamedTuple):
    type: str
    path: str = ""


class IDMapping(NamedTuple):
    container_id: int
    host_id: int
    size: int


class Device(NamedTuple):
    path: str
    type: str
    major: int = 0
    minor: int = 0
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


class SeccompArg(NamedTuple):
    arg_index: int
    value: int
    value_two: int
    op: str


class SeccompSyscall(NamedTuple):
    names: tuple[str, ...]
    action: str
    errno_ret: int | None = None
    args: tuple[SeccompArg, ...] = ()


class Seccomp(NamedTuple):
    default_action: str
    default_errno_ret: int | None = None
    architectures: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    listener_path: str = ""
    syscalls: tuple[SeccompSyscall, ...] = ()


class Spec(NamedTuple):
    """A parsed config.json; every field is set by parse_spec."""

    oci_version: str
    process: Process | None
    root: Root | None
    hostname: str
    domainname: str
    mounts: tuple[Mount, ...]
    hooks: Hooks
    annotations: dict[str, str]
    namespaces: tuple[Namespace, ...]
    uid_mappings: tuple[IDMapping, ...]
    gid_mappings: tuple[IDMapping, ...]
    devices: tuple[Device, ...]
    cgroups_path: str
    resources: dict[str, Any]
    sysctl: dict[str, str]
    seccomp: Seccomp | None
    rootfs_propagation: str
    masked_paths: tuple[str, ...]
    readonly_paths: tuple[str, ...]
    mount_label: str
    personality: str
    raw: dict[str, Any]

    def namespace(self, kind: str) -> Namespace | None:
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None


def _process(r: _Reader) -> Process:
    cwd = r.text("cwd")
    if not cwd.startswith("/"):
        raise InvalidArgument(f"config.json: {r.path}.cwd: must be an absolute path, got {cwd!r}")
    args = r.texts("args")
    u = r.sub("user")
    user = User()
    if u is not None:
        umask = u.integer("umask")
        user = User(
            uid=u.integer("uid", 0) or 0,
            gid=u.integer("gid", 0) or 0,
            umask=umask,
            additional_gids=tuple(_ints(u, "additionalGids")),
        )
    caps = None
    c = r.sub("capabilities")
    if c is not None:
        caps = Capabilities(
            bounding=c.texts("bounding"),
            effective=c.texts("effective"),
            inheritable=c.texts("inheritable"),
            permitted=c.texts("permitted"),
            ambient=c.texts("ambient"),
        )
    rlimits = []
    seen: set[str] = set()
    for rl in r.objs("rlimits"):
        kind = rl.text("type")
        if kind in seen:
            raise InvalidArgument(f"config.json: {rl.path}: duplicate rlimit {kind}")
        seen.add(kind)
        rlimits.append(Rlimit(kind, rl.integer("soft", 0) or 0, rl.integer("hard", 0) or 0))
    cs = r.sub("consoleSize")
    size = None
    if cs is not None:
        size = ConsoleSize(height=cs.integer("height", 0) or 0, width=cs.integer("width", 0) or 0)
    return Process(
        args=args,
        cwd=cwd,
        env=r.texts("env"),
        terminal=r.flag("terminal"),
        console_size=size,
        user=user,
        capabilities=caps,
        rlimits=tuple(rlimits),
        no_new_privileges=r.flag("noNewPrivileges"),
        apparmor_profile=r.text("apparmorProfile"),
        selinux_label=r.text("selinuxLabel"),
        oom_score_adj=r.integer("oomScoreAdj"),
    )


def _ints(r: _Reader, key: str) -> list[int]:
    v = r.obj.get(key) or []
    if not isinstance(v, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in v
    ):
        raise InvalidArgument(f"config.json: {r.path}.{key}: expected array of integers")
    return v


def _hooks(r: _Reader | None) -> Hooks:
    if r is None:
        return Hooks()

    def load(key: str) -> tuple[Hook, ...]:
        out = []
        for h in r.objs(key):
            path = h.text("path")
            if not path.startswith("/"):
                raise InvalidArgument(f"config.json: {h.path}.path: must be absolute")
            timeout = h.integer("timeout")
            if timeout is not None and timeout <= 0:
                raise InvalidArgument(f"config.json: {h.path}.timeout: must be positive")
            out.append(Hook(path, h.texts("args"), h.texts("env"), timeout))
        return tuple(out)

    return Hooks(
        prestart=load("prestart"),
        create_runtime=load("createRuntime"),
        create_container=load("createContainer"),
        start_container=load("startContainer"),
        poststart=load("poststart"),
        poststop=load("poststop"),
    )


def _id_mappings(r: _Reader, key: str) -> tuple[IDMapping, ...]:
    return tuple(
        IDMapping(m.integer("containerID", 0) or 0, m.integer("hostID", 0) or 0,
                  m.integer("size", 0) or 0)
        for m in r.objs(key)
    )


def _seccomp(r: _Reader) -> Seccomp:
    calls = []
    for s in r.objs("syscalls"):
        args = tuple(
            SeccompArg(
                arg_index=a.integer("index", 0) or 0,
                value=a.integer("value", 0) or 0,
                value_two=a.integer("valueTwo", 0) or 0,
                op=a.text("op"),
            )
            for a in s.objs("args")
        )
        calls.append(
            SeccompSyscall(s.texts("names"), s.text("action"), s.integer("errnoRet"), args))
    return Seccomp(
        default_action=r.text("defaultAction"),
        default_errno_ret=r.integer("defaultErrnoRet"),
        architectures=r.texts("architectures"),
        flags=r.texts("flags"),
        listener_path=r.text("listenerPath"),
        syscalls=tuple(calls),
    )


def parse_process(obj: Any, path: str = "process") -> Process:
    """Parse a process object on its own (``exec --process FILE``)."""
    return _process(_Reader(obj, path))


def parse_spec(obj: Any) -> Spec:
    """Parse and validate a decoded config.json."""
    r = _Reader(obj, "")
    version = r.text("ociVersion")
    if not version:
        raise InvalidArgument("config.json: ociVersion: missing")
    if not version.startswith(SUPPORTED_VERSION_PREFIX):
        raise InvalidArgument(f"config.json: ociVersion: unsupported version {version!r}")
    p = r.sub("process")
    root = None
    rr = r.sub("root")
    if rr is not None:
        if not rr.text("path"):
            raise InvalidArgument("config.json: root.path: missing")
        root = Root(rr.text("path"), rr.flag("readonly"))
    mounts = []
    for m in r.objs("mounts"):
        dest = m.text("destination")
        if not dest:
            raise InvalidArgument(f"config.json: {m.path}.destination: missing")
        mounts.append(Mount(dest, m.text("type"), m.text("source"), m.texts("options")))
    linux = r.sub("linux") or _Reader({}, "linux")
    namespaces = []
    seen: set[str] = set()
    for n in linux.objs("namespaces"):
        kind = n.text("type")
        if kind not in NAMESPACE_TYPES:
            raise InvalidArgument(f"config.json: {n.path}.type: unknown namespace {kind!r}")
        if kind in seen:
            raise InvalidArgument(f"config.json: {n.path}: duplicate namespace {kind!r}")
        seen.add(kind)
        namespaces.append(Namespace(kind, n.text("path")))
    devices = []
    for d in linux.objs("devices"):
        kind = d.text("type")
        if kind not in ("c", "b", "u", "p"):
            raise InvalidArgument(f"config.json: {d.path}.type: unknown device type {kind!r}")
        if not d.text("path").startswith("/"):
            raise InvalidArgument(f"config.json: {d.path}.path: must be absolute")
        devices.append(
            Device(
                path=d.text("path"),
                type=kind,
                major=d.integer("major", 0) or 0,
                minor=d.integer("minor", 0) or 0,
                file_mode=d.integer("fileMode"),
                uid=d.integer("uid"),
                gid=d.integer("gid"),
            )
        )
    resources = linux.obj.get("resources") or {}
    if not isinstance(resources, dict):
        raise InvalidArgument("config.json: linux.resources: expected object")
    sc = linux.sub("seccomp")
    hostname = r.text("hostname")
    if hostname and not any(n.type == "uts" for n in namespaces):
        raise InvalidArgument("config.json: hostname: needs a new uts namespace")
    return Spec(
        oci_version=version,
        process=_process(p) if p is not None else None,
        root=root,
        hostname=hostname,
        domainname=r.text("domainname"),
        mounts=tuple(mounts),
        hooks=_hooks(r.sub("hooks")),
        annotations=r.str_map("annotations"),
        namespaces=tuple(namespaces),
        uid_mappings=_id_mappings(linux, "uidMappings"),
        gid_mappings=_id_mappings(linux, "gidMappings"),
        devices=tuple(devices),
        cgroups_path=linux.text("cgroupsPath"),
        resources=resources,
        sysctl=linux.str_map("sysctl"),
        seccomp=_seccomp(sc) if sc is not None else None,
        rootfs_propagation=linux.text("rootfsPropagation"),
        masked_paths=linux.texts("maskedPaths"),
        readonly_paths=linux.texts("readonlyPaths"),
        mount_label=linux.text("mountLabel"),
        personality=(linux.sub("personality") or _Reader({}, "")).text("domain"),
        raw=obj,
    )


def load_spec_bytes(data: bytes) -> Spec:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"config.json: malformed JSON: {e}") from e
    return parse_spec(obj)
