"""`matou`: the client, with docker's verbs, flags and output.

    matou [-H HOST] [--tls…] COMMAND …        (DOCKER_HOST / MATOU_HOST pick the daemon)

The short forms (`matou ps`) and the management forms (`matou container ls`) are the
same commands. Exit codes are docker's: 125 when the daemon refuses, 126/127 when the
command cannot run, else the container's own. Imports are lazy: `matou version` costs
little more than an interpreter start.

May import: client, cli.formatting (and stdlib).
"""

from __future__ import annotations

import os
import sys
import time

from matou.cli import formatting as fmt
from matou.cli.flags import REMAINDER, REMAINDER1, Args, Parser
from matou.client import fastjson as json
from matou.client.transport import ApiError, Client, Unreachable

TYPE_CHECKING = False  # not typing's: importing it costs 3 ms of every start
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    Handler = Callable[[Client, Args], int]
COMMANDS: dict[str, tuple[Handler, Callable[[Parser], None], str]] = {}
MANAGEMENT = {
    "container": {"ls": "ps", "list": "ps", "ps": "ps", "run": "run", "create": "create",
                  "start": "start", "stop": "stop", "restart": "restart", "kill": "kill",
                  "rm": "rm", "remove": "rm", "logs": "logs", "exec": "exec",
                  "inspect": "inspect", "top": "top", "port": "port", "wait": "wait",
                  "pause": "pause", "unpause": "unpause", "rename": "rename", "diff": "diff",
                  "export": "export", "prune": "container-prune", "stats": "stats",
                  "attach": "attach", "commit": "commit", "cp": "cp", "update": "update"},
    "image": {"ls": "images", "list": "images", "rm": "rmi", "remove": "rmi", "tag": "tag",
              "inspect": "image-inspect", "history": "history", "prune": "image-prune",
              "save": "save", "load": "load", "import": "import", "pull": "pull",
              "push": "push"},
    "volume": {"ls": "volume-ls", "list": "volume-ls", "create": "volume-create",
               "rm": "volume-rm", "remove": "volume-rm", "inspect": "volume-inspect",
               "prune": "volume-prune"},
    "network": {"ls": "network-ls", "list": "network-ls", "create": "network-create",
                "rm": "network-rm", "remove": "network-rm", "inspect": "network-inspect",
                "connect": "network-connect", "disconnect": "network-disconnect",
                "prune": "network-prune"},
    "system": {"info": "info", "df": "system-df", "events": "events", "prune": "system-prune"},
    "context": {"ls": "context-ls", "list": "context-ls", "create": "context-create",
                "rm": "context-rm", "remove": "context-rm", "use": "context-use",
                "inspect": "context-inspect", "show": "context-show"},
}


def command(name: str, help_: str = "") -> Callable[
        [Callable[[Parser], None]], Callable[[Handler], Handler]]:
    def args(add: Callable[[Parser], None]) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            COMMANDS[name] = (fn, add, help_)
            return fn
        return register
    return args


def _none(p: Parser) -> None:
    pass


def die(msg: str, code: int = 1) -> NoReturn:
    print(msg, file=sys.stderr)
    raise SystemExit(code)


# -- system --------------------------------------------------------------------------------

def _version_args(p: Parser) -> None:
    p.add_argument("-f", "--format")


@command("version", "Show the matou version information")(_version_args)
def version(c: Client, a: Args) -> int:
    from matou import __version__

    client: dict[str, Any] = {"Platform": {"Name": "matou"}, "Version": __version__,
                              "ApiVersion": "1.50",
              "Os": sys.platform, "Arch": os.uname().machine}
    server: dict[str, Any] | None = None
    err = None
    try:
        server = c.json("GET", "/version")
    except (Unreachable, ApiError) as e:
        err = e
    if a.format:  # templates use the docker CLI's Go field names
        for part in (client, server or {}):
            part.setdefault("APIVersion", part.get("ApiVersion"))
            part.setdefault("MinAPIVersion", part.get("MinAPIVersion"))
        sys.stdout.write(fmt.render(a.format, {"Client": client, "Server": server}) + "\n")
    else:
        python = ".".join(map(str, sys.version_info[:3]))
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(client["Arch"], client["Arch"])
        print(f"Client:\n Version:           {client['Version']}\n"
              f" API version:       {c.version or '1.50'}\n"
              f" Go version:        python{python}\n"
              f" Git commit:        \n Built:             \n"
              f" OS/Arch:           linux/{arch}\n Context:           default")
        if server:
            name = (server.get("Platform") or {}).get("Name") or ""
            print(f"\nServer: {name}".rstrip())
            engine = next((x for x in server.get("Components") or []
                           if x.get("Name") == "Engine"), None)
            details = (engine or {}).get("Details") or {}
            print(f" Engine:\n  Version:          {server.get('Version')}\n"
                  f"  API version:      {server.get('ApiVersion')} (minimum version "
                  f"{server.get('MinAPIVersion')})\n"
                  f"  Go version:       {server.get('GoVersion', '')}\n"
                  f"  Git commit:       {server.get('GitCommit', '')}\n"
                  f"  Built:            {server.get('BuildTime', '')}\n"
                  f"  OS/Arch:          {server.get('Os')}/{server.get('Arch')}\n"
                  f"  Experimental:     {str(details.get('Experimental', 'false')).lower()}")
            for part in server.get("Components") or []:
                if part.get("Name") == "Engine":
                    continue
                print(f" {part.get('Name')}:\n  Version:          {part.get('Version')}")
                for k, v in (part.get("Details") or {}).items():
                    print(f"  {k + ':':<18}{v}")
    if err is not None:
        die(str(err))
    return 0


@command("info", "Display system-wide information")(_version_args)
def info(c: Client, a: Args) -> int:
    i = c.json("GET", "/info")
    if a.format:
        print(fmt.render(a.format, i))
        return 0
    from matou import __version__

    print(f"Client:\n Version:    {__version__}\n Context:    default\n Debug Mode: false\n")
    print("\n".join(_server_info(i)) + "\n")
    for warning in i.get("Warnings") or []:
        print(warning, file=sys.stderr)
    return 0


def _server_info(i: dict[str, Any]) -> list[str]:
    """docker info's Server section, line for line as the docker CLI lays it out."""
    def flag(key: str) -> str:
        return "true" if i.get(key) else "false"

    def commit(key: str) -> str:
        return str((i.get(key) or {}).get("ID") or "")

    plugins = i.get("Plugins") or {}
    out = ["Server:", f" Containers: {i.get('Containers')}",
           f"  Running: {i.get('ContainersRunning')}",
           f"  Paused: {i.get('ContainersPaused')}",
           f"  Stopped: {i.get('ContainersStopped')}",
           f" Images: {i.get('Images')}",
           f" Server Version: {i.get('ServerVersion')}",
           f" Storage Driver: {i.get('Driver')}"]
    out += [f"  {k}: {v}" for k, v in i.get("DriverStatus") or []]
    out += [f" Logging Driver: {i.get('LoggingDriver')}",
            f" Cgroup Driver: {i.get('CgroupDriver')}",
            f" Cgroup Version: {i.get('CgroupVersion')}",
            " Plugins:"]
    out += [f"  {kind}: {' '.join(plugins[kind])}" for kind in
            ("Volume", "Network", "Authorization", "Log") if plugins.get(kind)]
    out += [f" Swarm: {(i.get('Swarm') or {}).get('LocalNodeState') or 'inactive'}",
            f" Runtimes: {' '.join(sorted(i.get('Runtimes') or {}))}",
            f" Default Runtime: {i.get('DefaultRuntime')}",
            f" Init Binary: {i.get('InitBinary') or ''}",
            f" containerd version: {commit('ContainerdCommit')}",
            f" runc version: {commit('RuncCommit')}",
            f" init version: {commit('InitCommit')}"]
    if i.get("SecurityOptions"):
        out.append(" Security Options:")
        for opt in i["SecurityOptions"]:
            fields = dict(kv.partition("=")[::2] for kv in opt.split(","))
            out.append(f"  {fields.pop('name', opt)}")
            out += [f"   {k.title()}: {v}" for k, v in fields.items()]
    out += [f" Kernel Version: {i.get('KernelVersion')}",
            f" Operating System: {i.get('OperatingSystem')}",
            f" OSType: {i.get('OSType')}",
            f" Architecture: {i.get('Architecture')}",
            f" CPUs: {i.get('NCPU')}",
            f" Total Memory: {_bin_size(i.get('MemTotal') or 0)}",
            f" Name: {i.get('Name')}",
            f" ID: {i.get('ID')}",
            f" Docker Root Dir: {i.get('DockerRootDir')}",
            f" Debug Mode: {flag('Debug')}"]
    out += [f" {name}: {i[key]}" for name, key in (("HTTP Proxy", "HttpProxy"),
                                                   ("HTTPS Proxy", "HttpsProxy"),
                                                   ("No Proxy", "NoProxy")) if i.get(key)]
    if i.get("Labels"):
        out += [" Labels:", *(f"  {label}" for label in i["Labels"])]
    out.append(f" Experimental: {flag('ExperimentalBuild')}")
    registries = i.get("RegistryConfig") or {}
    insecure = [name for name, index in sorted((registries.get("IndexConfigs") or {}).items())
                if not index.get("Secure")] + list(registries.get("InsecureRegistryCIDRs") or [])
    if insecure:
        out += [" Insecure Registries:", *(f"  {r}" for r in insecure)]
    if registries.get("Mirrors"):
        out += [" Registry Mirrors:", *(f"  {m}" for m in registries["Mirrors"])]
    out.append(f" Live Restore Enabled: {flag('LiveRestoreEnabled')}")
    return out


# -- containers: listing and inspecting ----------------------------------------------------

def _ps_args(p: Parser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("-n", "--last", type=int, default=-1)
    p.add_argument("-l", "--latest", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")


def _filters(items: list[str]) -> dict[str, list[str]] | None:
    out: dict[str, list[str]] = {}
    for f in items:
        k, _, v = f.partition("=")
        out.setdefault(k, []).append(v)
    return out or None


def _ports(ports: list[dict[str, Any]]) -> str:
    shown = []
    for p in sorted(ports, key=lambda p: (p.get("PrivatePort", 0), p.get("Type", ""))):
        if p.get("PublicPort"):
            shown.append(f"{p.get('IP', '0.0.0.0')}:{p['PublicPort']}->{p['PrivatePort']}/"
                         f"{p['Type']}")
        else:
            shown.append(f"{p['PrivatePort']}/{p['Type']}")
    return ", ".join(shown)


def _ps_row(x: dict[str, Any], no_trunc: bool) -> dict[str, Any]:
    cmd = x.get("Command") or ""
    return {"ID": x["Id"] if no_trunc else x["Id"][:12], "Image": x.get("Image", ""),
            "Command": json.dumps(cmd if no_trunc else fmt.truncate(cmd, 20),
                                  ensure_ascii=False),
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z",
                                       time.localtime(x.get("Created", 0))),
            "RunningFor": fmt.ago(x.get("Created", 0)),
            "Status": x.get("Status", ""), "State": x.get("State", ""),
            "Ports": _ports(x.get("Ports") or []),
            "Names": ",".join(n.lstrip("/") for n in x.get("Names") or []),
            "Labels": ",".join(f"{k}={v}" for k, v in (x.get("Labels") or {}).items()),
            "Size": (f"{fmt.human_size(x.get('SizeRw') or 0)} (virtual "
                     f"{fmt.human_size(x.get('SizeRootFs') or 0)})") if "SizeRw" in x else "",
            "Mounts": ",".join(m.get("Name") or m.get("Source", "")
                               for m in x.get("Mounts") or []),
            "Networks": ",".join((x.get("NetworkSettings") or {}).get("Networks") or {})}


PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Status": "STATUS",
              "State": "STATE", "Ports": "PORTS", "Names": "NAMES", "Labels": "LABELS",
              "Size": "SIZE", "Mounts": "MOUNTS", "Networks": "NETWORKS"}


@command("ps", "List containers")(_ps_args)
def ps(c: Client, a: Args) -> int:
    limit = 1 if a.latest else a.last
    items = c.json("GET", "/containers/json", {
        "all": a.all or limit > 0, "size": a.size or None, "filters": _filters(a.filter),
        "limit": limit if limit > 0 else None})
    if a.quiet:
        for x in items:
            print(x["Id"] if a.no_trunc else x["Id"][:12])
        return 0
    template = a.format or ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t"
                            "{{.Status}}\t{{.Ports}}\t{{.Names}}" +
                            ("\t{{.Size}}" if a.size else ""))
    sys.stdout.write(fmt.formatted(template, items, PS_HEADERS,
                                   lambda x: _ps_row(x, a.no_trunc)))
    return 0


def _inspect_args(p: Parser) -> None:
    p.add_argument("-f", "--format")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("--type", choices=["container", "image", "volume", "network"])
    p.add_argument("names", nargs="+")


def _objects_args(p: Parser) -> None:
    p.add_argument("-f", "--format")
    p.add_argument("names", nargs="+")


def _print_objects(objs: list[Any], template: str | None) -> None:
    if template:
        for o in objs:
            print(fmt.render(template, o))
    else:
        import json as indenting

        print(indenting.dumps(objs, indent=4, ensure_ascii=False))


@command("inspect", "Return low-level information on matou objects")(_inspect_args)
def inspect(c: Client, a: Args) -> int:
    found: list[Any] = []
    code = 0
    kinds = [a.type] if a.type else ["container", "image", "volume", "network"]
    paths = {"container": "/containers/{}/json", "image": "/images/{}/json",
             "volume": "/volumes/{}", "network": "/networks/{}"}
    for name in a.names:
        for kind in kinds:
            try:
                found.append(c.json("GET", paths[kind].format(name)))
                break
            except ApiError as e:
                if e.status != 404:
                    raise
        else:
            print(f"Error: No such object: {name}", file=sys.stderr)
            code = 1
    _print_objects(found, a.format)
    return code


def _names_args(p: Parser) -> None:
    p.add_argument("names", nargs="+")


def _each(c: Client, names: list[str], fn: Callable[[str], object], echo: bool = True) -> int:
    code = 0
    for n in names:
        try:
            fn(n)
            if echo:
                print(n)
        except ApiError as e:
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
            code = 1
    return code


def _stop_args(p: Parser) -> None:
    p.add_argument("-t", "--time", "--timeout", type=int, dest="time")
    p.add_argument("-s", "--signal")
    p.add_argument("names", nargs="+")


@command("stop", "Stop one or more running containers")(_stop_args)
def stop(c: Client, a: Args) -> int:
    return _each(c, a.names, lambda n: c.request(
        "POST", f"/containers/{n}/stop", {"t": a.time, "signal": a.signal}, timeout=None))


@command("restart", "Restart one or more containers")(_stop_args)
def restart(c: Client, a: Args) -> int:
    return _each(c, a.names, lambda n: c.request(
        "POST", f"/containers/{n}/restart", {"t": a.time, "signal": a.signal}))


def _kill_args(p: Parser) -> None:
    p.add_argument("-s", "--signal")
    p.add_argument("names", nargs="+")


@command("kill", "Kill one or more running containers")(_kill_args)
def kill(c: Client, a: Args) -> int:
    return _each(c, a.names, lambda n: c.request("POST", f"/containers/{n}/kill",
                                                 {"signal": a.signal}))


@command("start", "Start one or more stopped containers")(_names_args)
def start(c: Client, a: Args) -> int:
    return _each(c, a.names, lambda n: c.request("POST", f"/containers/{n}/start"))


@command("pause", "Pause all processes within one or more containers")(_names_args)
def pause(c: Client, a: Args) -> int:
    return _each(c, a.names, lambda n: c.request("POST", f"/containers/{n}/pause"))


@command("unpause", "Unpause all processes within one or more containers")(_names_args)
def unpause(c: Client, a: Args) -> int:
    return _each(c, a.names, lambda n: c.request("POST", f"/containers/{n}/unpause"))


@command("wait", "Block until one or more containers stop, then print their exit codes")(
    _names_args)
def wait(c: Client, a: Args) -> int:
    code = 0
    for n in a.names:
        try:
            r = c.json("POST", f"/containers/{n}/wait")
            print(r["StatusCode"])
        except ApiError as e:
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
            code = 1
    return code


def _rm_args(p: Parser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("-l", "--link", action="store_true")
    p.add_argument("names", nargs="+")


@command("rm", "Remove one or more containers")(_rm_args)
def rm(c: Client, a: Args) -> int:
    return _each(c, a.names, lambda n: c.request(
        "DELETE", f"/containers/{n}", {"force": a.force or None, "v": a.volumes or None,
                                       "link": a.link or None}))


def _rename_args(p: Parser) -> None:
    p.add_argument("old")
    p.add_argument("new")


@command("rename", "Rename a container")(_rename_args)
def rename(c: Client, a: Args) -> int:
    c.request("POST", f"/containers/{a.old}/rename", {"name": a.new})
    return 0


def _one_args(p: Parser) -> None:
    p.add_argument("name")
    p.add_argument("extra", nargs="*")


@command("port", "List port mappings or a specific mapping for the container")(_one_args)
def port(c: Client, a: Args) -> int:
    ports = (c.json("GET", f"/containers/{a.name}/json").get("NetworkSettings") or {}).get(
        "Ports") or {}
    want = a.extra[0] if a.extra else None
    if want and "/" not in want:
        want += "/tcp"
    shown = False
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
        for h in ports[key] or []:
            if want is None:
                print(f"{key} -> {h['HostIp']}:{h['HostPort']}")
            elif key == want:
                print(f"{h['HostIp']}:{h['HostPort']}")
            shown = True
    if want and not shown:
        die(f"Error: No public port '{want}' published for {a.name}")
    return 0


@command("top", "Display the running processes of a container")(_one_args)
def top(c: Client, a: Args) -> int:
    t = c.json("GET", f"/containers/{a.name}/top",
               {"ps_args": " ".join(a.extra) if a.extra else None})
    sys.stdout.write(fmt.table([t["Titles"], *t["Processes"]], min_width=20, padding=1))
    return 0


@command("diff", "Inspect changes to files or directories on a container's filesystem")(
    _one_args)
def diff(c: Client, a: Args) -> int:
    for ch in c.json("GET", f"/containers/{a.name}/changes") or []:
        print(f"{'CAD'[ch['Kind']]} {ch['Path']}")
    return 0


# -- logs, run, exec --------------------------------------------------------------------

def _demux(sock: Any, tty: bool) -> None:
    """Copy a hijacked stream to stdout/stderr (multiplexed frames unless a TTY)."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    buf = b""
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            break
        if tty:
            out.write(data)
            out.flush()
            continue
        buf += data
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            (err if buf[0] == 2 else out).write(buf[8:8 + size])
            buf = buf[8 + size:]
        out.flush()
        err.flush()


def _when(text: str | None) -> str | None:
    """--since/--until as the docker CLI sends them: unix seconds.nanoseconds, from a
    timestamp, an RFC 3339 date or time (local when it names no zone), or a Go duration
    ago (10m, 1h30m)."""
    if not text:
        return None
    try:
        float(text)
        return text
    except ValueError:
        pass
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    rest, seconds = text, 0.0
    while rest:
        number = len(rest) - len(rest.lstrip("0123456789."))
        unit = next((u for u in ("ms", "us", "ns", "h", "m", "s")
                     if rest[number:].startswith(u)), None)
        if not number or unit is None:
            break
        seconds += float(rest[:number]) * units[unit]
        rest = rest[number + len(unit):]
    else:
        return f"{time.time() - seconds:.9f}"
    from datetime import datetime

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        die(f'invalid value for "since": failed to parse value as time or duration: '
            f'"{text}"', 1)
    return f"{when.timestamp():.9f}"  # a naive time is local, as docker reads it


def _logs_args(p: Parser) -> None:
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("name")


@command("logs", "Fetch the logs of a container")(_logs_args)
def logs(c: Client, a: Args) -> int:
    tty = bool(c.json("GET", f"/containers/{a.name}/json")["Config"].get("Tty"))
    r = c.request("GET", f"/containers/{a.name}/logs", {
        "stdout": True, "stderr": True, "follow": a.follow or None,
        "timestamps": a.timestamps or None, "tail": a.tail, "since": _when(a.since),
        "until": _when(a.until)}, stream=True)

    class _R:
        def recv(self, n: int) -> bytes:
            return r.read1(n)

    _demux(_R(), tty)
    return 0


def _run_args(p: Parser, create_only: bool = False) -> None:
    if not create_only:
        p.add_argument("-d", "--detach", action="store_true")
        p.add_argument("--rm", action="store_true")
        p.add_argument("--sig-proxy", default="true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--name")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-p", "--publish", action="append", default=[])
    p.add_argument("-P", "--publish-all", action="store_true")
    p.add_argument("--expose", action="append", default=[])
    p.add_argument("-v", "--volume", action="append", default=[])
    p.add_argument("--tmpfs", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--entrypoint")
    p.add_argument("--network", "--net", dest="network")
    p.add_argument("--network-alias", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("--ip6")
    p.add_argument("--restart")
    p.add_argument("-m", "--memory")
    p.add_argument("--cpus", type=float)
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--cap-add", action="append", default=[])
    p.add_argument("--cap-drop", action="append", default=[])
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--security-opt", action="append", default=[])
    p.add_argument("--init", action="store_true")
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("-h", "--hostname")
    p.add_argument("--add-host", action="append", default=[])
    p.add_argument("--dns", action="append", default=[])
    p.add_argument("--link", action="append", default=[])
    p.add_argument("--log-driver")
    p.add_argument("--log-opt", action="append", default=[])
    p.add_argument("--stop-signal")
    p.add_argument("--health-cmd")
    p.add_argument("--health-interval")
    p.add_argument("--health-timeout")
    p.add_argument("--health-retries", type=int)
    p.add_argument("--health-start-period")
    p.add_argument("--health-start-interval")
    p.add_argument("--no-healthcheck", action="store_true")
    p.add_argument("--mount", action="append", default=[])
    p.add_argument("--volumes-from", action="append", default=[])
    p.add_argument("--ulimit", action="append", default=[])
    p.add_argument("--device", action="append", default=[])
    p.add_argument("--sysctl", action="append", default=[])
    p.add_argument("--group-add", action="append", default=[])
    p.add_argument("--label-file", action="append", default=[])
    p.add_argument("--annotation", action="append", default=[])
    p.add_argument("--dns-search", action="append", default=[])
    p.add_argument("--dns-option", "--dns-opt", dest="dns_option", action="append",
                   default=[])
    p.add_argument("--domainname")
    p.add_argument("--mac-address")
    p.add_argument("--memory-swap")
    p.add_argument("--memory-reservation")
    p.add_argument("--shm-size")
    p.add_argument("-c", "--cpu-shares", type=int)
    p.add_argument("--cpu-period", type=int)
    p.add_argument("--cpu-quota", type=int)
    p.add_argument("--cpuset-cpus")
    p.add_argument("--cpuset-mems")
    p.add_argument("--oom-score-adj", type=int)
    p.add_argument("--pid")
    p.add_argument("--ipc")
    p.add_argument("--uts")
    p.add_argument("--stop-timeout", type=int)
    p.add_argument("--cgroup-parent")
    p.add_argument("--cgroupns")
    p.add_argument("--userns")
    p.add_argument("--blkio-weight", type=int)
    p.add_argument("--blkio-weight-device", action="append", default=[])
    p.add_argument("--device-read-bps", action="append", default=[])
    p.add_argument("--device-write-bps", action="append", default=[])
    p.add_argument("--device-read-iops", action="append", default=[])
    p.add_argument("--device-write-iops", action="append", default=[])
    p.add_argument("--runtime")
    p.add_argument("--platform")
    p.add_argument("--pull", default="missing", choices=["always", "missing", "never"])
    p.add_argument("--cidfile")
    p.add_argument("-a", "--attach", action="append", default=[])
    p.add_argument("--detach-keys")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("cmd", nargs=REMAINDER, metavar="COMMAND")


def _size(text: str) -> int:
    """go-units RAMInBytes: 512, 64m, 1.5g, 1mb, 1MiB — binary units."""
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t[-1:] in units else int(float(t))
    except (ValueError, IndexError):
        die(f'invalid size: "{text}"', 125)


def _duration(text: str) -> int:
    units = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    for u in ("ms", "s", "m", "h"):
        if text.endswith(u):
            return int(float(text[: -len(u)]) * units[u])
    return int(float(text) * 10**9)


def _mount(spec: str) -> dict[str, Any]:
    """--mount's CSV (type=bind,source=/a,target=/b,readonly,…) as an API Mount."""
    m: dict[str, Any] = {"Type": "volume"}
    for field in spec.split(","):
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if key == "type":
            m["Type"] = value
        elif key in ("source", "src"):
            m["Source"] = value
        elif key in ("target", "destination", "dst"):
            m["Target"] = value
        elif key in ("readonly", "ro"):
            m["ReadOnly"] = not eq or value.lower() in ("1", "true")
        elif key == "bind-propagation":
            m.setdefault("BindOptions", {})["Propagation"] = value
        elif key == "bind-recursive":
            m.setdefault("BindOptions", {})["NonRecursive"] = value == "disabled"
        elif key == "volume-nocopy":
            m.setdefault("VolumeOptions", {})["NoCopy"] = not eq or value.lower() in (
                "1", "true")
        elif key == "volume-subpath":
            m.setdefault("VolumeOptions", {})["Subpath"] = value
        elif key == "volume-driver":
            m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, _, v = value.partition("=")
            m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {}).setdefault(
                "Options", {})[k] = v
        elif key == "volume-label":
            k, _, v = value.partition("=")
            m.setdefault("VolumeOptions", {}).setdefault("Labels", {})[k] = v
        elif key == "tmpfs-size":
            m.setdefault("TmpfsOptions", {})["SizeBytes"] = _size(value)
        elif key == "tmpfs-mode":
            m.setdefault("TmpfsOptions", {})["Mode"] = int(value, 8)
        elif key != "consistency":
            die(f'invalid argument "{spec}" for "--mount" flag: unexpected key \'{key}\' in '
                f"'{field}'", 125)
    if not m.get("Target"):
        die(f'invalid argument "{spec}" for "--mount" flag: target is required', 125)
    if "VolumeOptions" in m:  # as docker sends it
        m["VolumeOptions"].setdefault("DriverConfig", {})
    return m


def _ulimit(spec: str) -> dict[str, Any]:
    name, _, limits = spec.partition("=")
    soft, _, hard = limits.partition(":")
    try:
        return {"Name": name, "Soft": int(soft), "Hard": int(hard or soft)}
    except ValueError:
        die(f'invalid argument "{spec}" for "--ulimit" flag: invalid ulimit argument: {spec}',
            125)


def _device(spec: str) -> dict[str, str]:
    parts = spec.split(":")
    perms = parts[-1] if len(parts) > 1 and set(parts[-1]) <= set("rwm") else ""
    if perms:
        parts = parts[:-1]
    return {"PathOnHost": parts[0], "PathInContainer": parts[1] if len(parts) > 1 else
            parts[0], "CgroupPermissions": perms or "rwm"}


def _path_values(items: list[str]) -> list[tuple[str, str]]:
    """--device-read-bps /dev/sda:1mb and its kind: (path, value) pairs."""
    out = []
    for item in items:
        path, sep, value = item.rpartition(":")
        if not sep or not path:
            die(f'invalid argument "{item}": expected PATH:VALUE', 125)
        out.append((path, value))
    return out


def _caps(names: list[str]) -> list[str] | None:
    """Capabilities as docker sends them: CAP_NET_ADMIN, or ALL."""
    out = [n.upper() if n.upper() == "ALL" or n.upper().startswith("CAP_") else
           f"CAP_{n.upper()}" for n in names]
    return out or None


def _create_body(a: Args) -> tuple[dict[str, Any], dict[str, Any] | None]:
    env = list(a.env)
    for path in a.env_file:
        with open(path) as f:
            env += [line.strip() for line in f if line.strip() and not line.startswith("#")]
    env = [e if "=" in e or e not in os.environ else f"{e}={os.environ[e]}" for e in env]
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for e in a.expose:
        exposed[e if "/" in e else f"{e}/tcp"] = {}
    for spec in a.publish:
        parts = spec.split(":")
        cport = parts[-1] if "/" in parts[-1] else parts[-1] + "/tcp"
        ip, hport = ("", "") if len(parts) == 1 else (
            ("", parts[0]) if len(parts) == 2 else (parts[0], parts[1]))
        exposed[cport] = {}
        bindings.setdefault(cport, []).append({"HostIp": ip, "HostPort": hport})
    label_lines = []
    for path in a.label_file:
        with open(path) as f:
            label_lines += [line.strip() for line in f
                            if line.strip() and not line.startswith("#")]
    labels = dict(x.split("=", 1) if "=" in x else (x, "") for x in [*label_lines, *a.label])
    host: dict[str, Any] = {
        "Binds": [v for v in a.volume if ":" in v] or None, "PortBindings": bindings or None,
        "PublishAllPorts": a.publish_all, "NetworkMode": a.network or "default",
        "CapAdd": _caps(a.cap_add), "CapDrop": _caps(a.cap_drop),
        "Privileged": a.privileged, "ReadonlyRootfs": a.read_only,
        "SecurityOpt": a.security_opt or None, "ExtraHosts": a.add_host or None,
        "Dns": a.dns or None, "Links": a.link or None,
        "AutoRemove": bool(getattr(a, "rm", False)),
        "Tmpfs": {t.split(":")[0]: t.partition(":")[2] for t in a.tmpfs} or None}
    for key, value in (("Mounts", [_mount(m) for m in a.mount]),
                       ("VolumesFrom", a.volumes_from),
                       ("Ulimits", [_ulimit(u) for u in a.ulimit]),
                       ("Devices", [_device(d) for d in a.device]),
                       ("Sysctls", dict(x.split("=", 1) for x in a.sysctl if "=" in x)),
                       ("GroupAdd", a.group_add), ("DnsSearch", a.dns_search),
                       ("DnsOptions", a.dns_option),
                       ("Annotations", dict(x.split("=", 1) for x in a.annotation
                                            if "=" in x)),
                       ("PidMode", a.pid), ("IpcMode", a.ipc), ("UTSMode", a.uts),
                       ("CgroupParent", a.cgroup_parent), ("CgroupnsMode", a.cgroupns),
                       ("UsernsMode", a.userns), ("BlkioWeight", a.blkio_weight),
                       ("BlkioWeightDevice", [{"Path": p, "Weight": int(w)} for p, w in
                                              _path_values(a.blkio_weight_device)]),
                       ("BlkioDeviceReadBps", [{"Path": p, "Rate": _size(v)} for p, v in
                                               _path_values(a.device_read_bps)]),
                       ("BlkioDeviceWriteBps", [{"Path": p, "Rate": _size(v)} for p, v in
                                                _path_values(a.device_write_bps)]),
                       ("BlkioDeviceReadIOps", [{"Path": p, "Rate": int(v)} for p, v in
                                                _path_values(a.device_read_iops)]),
                       ("BlkioDeviceWriteIOps", [{"Path": p, "Rate": int(v)} for p, v in
                                                 _path_values(a.device_write_iops)]),
                       ("Runtime", a.runtime), ("CpuShares", a.cpu_shares),
                       ("CpuPeriod", a.cpu_period), ("CpuQuota", a.cpu_quota),
                       ("CpusetCpus", a.cpuset_cpus), ("CpusetMems", a.cpuset_mems),
                       ("OomScoreAdj", a.oom_score_adj)):
        if value:
            host[key] = value
    for key, size in (("MemorySwap", a.memory_swap), ("MemoryReservation",
                                                      a.memory_reservation),
                      ("ShmSize", a.shm_size)):
        if size:
            host[key] = -1 if size == "-1" else _size(size)
    if a.init:
        host["Init"] = True
    if a.memory:
        host["Memory"] = _size(a.memory)
    if a.cpus:
        host["NanoCpus"] = int(a.cpus * 1e9)
    if a.pids_limit is not None:
        host["PidsLimit"] = a.pids_limit
    if a.restart:
        name, _, count = a.restart.partition(":")
        host["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(count or 0)}
    if a.log_driver or a.log_opt:
        host["LogConfig"] = {"Type": a.log_driver or "json-file",
                             "Config": dict(o.split("=", 1) for o in a.log_opt)}
    config: dict[str, Any] = {
        "Image": a.image, "Cmd": a.cmd or None, "Env": env or None,
        "ExposedPorts": exposed or None, "Tty": a.tty, "OpenStdin": a.interactive,
        "StdinOnce": a.interactive, "AttachStdin": a.interactive,
        "AttachStdout": not getattr(a, "detach", False),
        "AttachStderr": not getattr(a, "detach", False),
        "Labels": labels or None, "HostConfig": host,
        # -v /path alone: an anonymous volume, declared as an image would declare it
        "Volumes": {v: {} for v in a.volume if ":" not in v} or None}
    for key, value in (("WorkingDir", a.workdir), ("User", a.user), ("Hostname", a.hostname),
                       ("StopSignal", a.stop_signal), ("Domainname", a.domainname),
                       ("MacAddress", a.mac_address)):
        if value:
            config[key] = value
    if a.stop_timeout is not None:
        config["StopTimeout"] = a.stop_timeout
    if a.attach and not getattr(a, "detach", False):
        streams = {s.lower() for s in a.attach}
        config.update({"AttachStdin": "stdin" in streams, "AttachStdout": "stdout" in streams,
                       "AttachStderr": "stderr" in streams})
    if a.entrypoint is not None:
        config["Entrypoint"] = [a.entrypoint] if a.entrypoint else [""]
    if a.no_healthcheck:
        config["Healthcheck"] = {"Test": ["NONE"]}
    elif a.health_cmd or a.health_interval or a.health_timeout or a.health_retries or \
            a.health_start_period or a.health_start_interval:
        check: dict[str, Any] = {"Test": ["CMD-SHELL", a.health_cmd]} if a.health_cmd else {}
        for key, value in (("Interval", a.health_interval), ("Timeout", a.health_timeout),
                           ("StartPeriod", a.health_start_period),
                           ("StartInterval", a.health_start_interval)):
            if value:
                check[key] = _duration(value)
        if a.health_retries is not None:
            check["Retries"] = a.health_retries
        config["Healthcheck"] = check
    networking = None
    if a.network and (a.network_alias or a.ip or a.ip6):
        ep: dict[str, Any] = {"Aliases": a.network_alias or None}
        if a.ip or a.ip6:
            ep["IPAMConfig"] = {k: v for k, v in (("IPv4Address", a.ip),
                                                  ("IPv6Address", a.ip6)) if v}
        networking = {"EndpointsConfig": {a.network: ep}}
    return config, networking


def _create(c: Client, a: Args) -> str:
    config, networking = _create_body(a)
    if networking:
        config["NetworkingConfig"] = networking
    if a.cidfile and os.path.exists(a.cidfile):
        die(f"matou: container ID file found, make sure the other container isn't running "
            f"or delete {a.cidfile}", 125)
    query = {"name": a.name, "platform": a.platform}
    if a.pull == "always":
        pull_image(c, a.image, sys.stderr)
    try:
        r = c.json("POST", "/containers/create", query, config)
    except ApiError as e:
        if e.status == 404 and "No such image" in e.message and a.pull == "missing":
            print(f"Unable to find image '{a.image}' locally", file=sys.stderr)
            pull_image(c, a.image, sys.stderr)  # as docker: the progress on stderr
            r = c.json("POST", "/containers/create", query, config)
        else:
            raise
    for w in r.get("Warnings") or []:
        print(f"WARNING: {w}", file=sys.stderr)
    if a.cidfile:
        with open(a.cidfile, "x") as f:
            f.write(str(r["Id"]))
    return str(r["Id"])


def _config_path() -> str:
    return os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"),
                        "config.json")


def _read_config() -> dict[str, Any]:
    """docker's config.json ({} when missing or unreadable)."""
    try:
        with open(_config_path(), "rb") as f:
            config = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _write_config(config: dict[str, Any]) -> None:
    """Replace config.json atomically, readable by its owner only (it holds credentials)."""
    import json as indenting

    path = _config_path()
    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        indenting.dump(config, f, indent="\t")
    os.replace(path + ".tmp", path)


def _registry_of(ref: str) -> str:
    first, slash, _ = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "https://index.docker.io/v1/"


def _auth_header(ref: str) -> dict[str, str]:
    """X-Registry-Auth for ``ref``'s registry, from the credentials docker login keeps."""
    import base64

    auths = _read_config().get("auths") or {}
    entry = auths.get(_registry_of(ref)) or {}
    if not entry.get("auth"):
        return {}
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    blob = json.dumps({"username": user, "password": password,
                       "serveraddress": _registry_of(ref)}).encode()
    return {"X-Registry-Auth": base64.urlsafe_b64encode(blob).decode()}


def pull_image(c: Client, ref: str, out: Any = None) -> None:
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
    r = c.request("POST", "/images/create", {"fromImage": name, "tag": tag}, stream=True,
                  headers=_auth_header(ref))
    show_progress(c, r, out or sys.stdout)


def show_progress(c: Client, r: Any, out: Any) -> None:
    """A progress stream (pull, push, load) as the docker CLI shows it: on a terminal each
    layer keeps a line of its own, rewritten in place with a bar; elsewhere one line per
    status and no bars. An error in the stream ends the command."""
    tty = out.isatty()
    try:
        width = os.get_terminal_size(out.fileno()).columns if tty else 0
    except OSError:
        width = 80
    lines: dict[str, int] = {}
    for msg in c.json_stream(r):
        if msg.get("error") or msg.get("errorDetail"):
            raise ApiError(500, msg.get("error") or msg["errorDetail"].get("message", ""))
        if "aux" in msg:
            continue
        ident = str(msg.get("id") or "")
        moved = 0
        if ident and ("progressDetail" in msg or msg.get("progress")):
            if ident not in lines:  # a new layer: a new line at the bottom
                lines[ident] = len(lines)
                if tty:
                    out.write("\n")
            moved = len(lines) - lines[ident]
            if tty:
                out.write(f"\x1b[{moved}A")
        else:
            lines = {}  # anything else ends the block of layer lines
        _show_message(msg, tty, width, out)
        if ident and tty and moved:
            out.write(f"\x1b[{moved}B")
        out.flush()


def _show_message(msg: dict[str, Any], tty: bool, width: int, out: Any) -> None:
    detail = msg.get("progressDetail")
    bar = _progress_bar(detail, width) if isinstance(detail, dict) else ""
    end = ""
    if tty and not msg.get("stream") and detail is not None:
        out.write("\x1b[2K\r")
        end = "\r"
    elif bar:
        return  # progress bars only on a terminal
    if msg.get("id"):
        out.write(f"{msg['id']}: ")
    status = msg.get("status", "")
    if detail is not None and tty:
        out.write(f"{status} {bar}{end}")
    elif msg.get("progress"):
        out.write(f"{status} {msg['progress']}{end}")
    elif msg.get("stream"):
        out.write(f"{msg['stream']}{end}")
    else:
        out.write(f"{status}{end}\n")


def _progress_bar(detail: dict[str, Any], width: int) -> str:
    """docker's JSONProgress.String: a 50-column bar on wide terminals, then the bytes."""
    current, total = detail.get("current") or 0, detail.get("total") or 0
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{fmt.human_size(current, 4):>8}"
    half = min(int(current / total * 100) // 2, 50)
    box = f"[{'=' * half}>{' ' * (50 - half)}] " if width > 110 else ""
    numbers = f"{fmt.human_size(current, 4):>8}/{fmt.human_size(total, 4)}" \
        if current <= total else f"{fmt.human_size(current, 4):>8}"
    left = ""
    if detail.get("start") and half < 50:
        per_byte = (time.time() - detail["start"]) / current
        left = " " + _go_duration(round((total - current) * per_byte))
    return box + numbers + left


def _go_duration(seconds: int) -> str:
    """Go's Duration.String for whole seconds: 45s, 3m5s, 1h2m3s."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return (f"{h}h{m}m{s}s" if h else f"{m}m{s}s" if m else f"{s}s")


@command("create", "Create a new container")(lambda p: _run_args(p, create_only=True))
def create(c: Client, a: Args) -> int:
    print(_create(c, a))
    return 0


@command("run", "Create and run a new container from an image")(_run_args)
def run(c: Client, a: Args) -> int:
    cid = _create(c, a)
    if a.detach:
        c.request("POST", f"/containers/{cid}/start")
        print(cid)
        return 0
    sock = c.hijack(f"/containers/{cid}/attach", {
        "stream": True, "stdin": a.interactive, "stdout": True, "stderr": True,
        "detachKeys": a.detach_keys})
    waiter = c.request("POST", f"/containers/{cid}/wait",
                       {"condition": "removed" if a.rm else "next-exit"}, stream=True)
    try:
        c.request("POST", f"/containers/{cid}/start")
    except ApiError as e:
        sock.close()
        waiter.close()
        die(f"matou: Error response from daemon: {e.message}", 127 if "not found" in
            e.message or "no such file" in e.message else 126 if "permission denied" in
            e.message else 125)
    if a.sig_proxy.lower() in ("true", "1") and not a.tty:
        _proxy_signals(c, cid)
    with _terminal(a.tty and sys.stdin.isatty()):
        _pump(c, sock, a.interactive, a.tty, lambda h, w: c.request(
            "POST", f"/containers/{cid}/resize", {"h": h, "w": w}))
    return _exit_code(c, cid, waiter, a.interactive)


def _proxy_signals(c: Client, cid: str) -> None:
    """--sig-proxy (on by default without a TTY): what matou receives, the container gets."""
    import signal

    def forward(signum: int, _frame: Any) -> None:
        try:
            c.request("POST", f"/containers/{cid}/kill",
                      {"signal": signal.Signals(signum).name})
        except (ApiError, Unreachable):
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)


def _exit_code(c: Client, cid: str, waiter: Any, may_detach: bool) -> int:
    """The container's exit code once its stream ended — or 0 if the stream ended because
    the detach keys were typed and the container runs on."""
    if may_detach:
        import select

        ready, _, _ = select.select([waiter.sock], [], [], 1.0)
        if not ready and _running(c, cid):
            waiter.close()
            return 0
    result = json.loads(waiter.read() or b"{}")
    waiter.close()
    return int(result.get("StatusCode", 0))


def _running(c: Client, cid: str) -> bool:
    try:
        return bool(c.json("GET", f"/containers/{cid}/json")["State"]["Running"])
    except ApiError:
        return False


def _pump(c: Client, sock: Any, stdin: bool, tty: bool,
          resize: Callable[[int, int], Any]) -> None:
    import threading

    if tty and sys.stdin.isatty():
        import signal

        def on_winch(*_: Any) -> None:
            try:  # the terminal's own size (not $COLUMNS/$LINES, which go stale)
                size = os.get_terminal_size(sys.stdin.fileno())
                resize(size.lines, size.columns)
            except (ApiError, Unreachable, OSError):
                pass

        signal.signal(signal.SIGWINCH, on_winch)
        on_winch()
    if stdin:
        def feed() -> None:
            import _socket as s

            fd = sys.stdin.fileno()
            while data := os.read(fd, 65536):
                try:
                    sock.sendall(data)
                except OSError:
                    return
            if not tty:
                try:
                    sock.shutdown(s.SHUT_WR)
                except OSError:
                    pass

        threading.Thread(target=feed, daemon=True).start()
    _demux(sock, tty)
    sock.close()


class _terminal:
    """Raw mode for -it on a terminal, restored on the way out."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.saved: Any = None

    def __enter__(self) -> None:
        if self.on:
            import termios
            import tty

            self.saved = termios.tcgetattr(0)
            tty.setraw(0)

    def __exit__(self, *_: Any) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)


def _exec_args(p: Parser) -> None:
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--detach-keys")
    p.add_argument("name", metavar="CONTAINER")
    p.add_argument("cmd", nargs=REMAINDER1, metavar="COMMAND")


@command("exec", "Execute a command in a running container")(_exec_args)
def exec_(c: Client, a: Args) -> int:
    if not a.cmd:
        die("exec requires at least 2 arguments", 1)
    env = []
    for path in a.env_file:
        with open(path) as f:
            env += [line.strip() for line in f if line.strip() and not line.startswith("#")]
    env = [e if "=" in e or e not in os.environ else f"{e}={os.environ[e]}"
           for e in [*env, *a.env]]
    body = {"Cmd": a.cmd, "Tty": a.tty, "AttachStdin": a.interactive,
            "AttachStdout": not a.detach, "AttachStderr": not a.detach, "Env": env or None,
            "User": a.user or "", "WorkingDir": a.workdir or "", "Privileged": a.privileged,
            "DetachKeys": a.detach_keys or ""}
    ex = c.json("POST", f"/containers/{a.name}/exec", body=body)
    if a.detach:
        c.request("POST", f"/exec/{ex['Id']}/start", body={"Detach": True, "Tty": a.tty})
        return 0
    sock = c.hijack(f"/exec/{ex['Id']}/start", body={"Detach": False, "Tty": a.tty})
    with _terminal(a.tty and sys.stdin.isatty()):
        _pump(c, sock, a.interactive, a.tty, lambda h, w: c.request(
            "POST", f"/exec/{ex['Id']}/resize", {"h": h, "w": w}))
    code = c.json("GET", f"/exec/{ex['Id']}/json").get("ExitCode")
    return int(code if code is not None else 0)


def _attach_args(p: Parser) -> None:
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--detach-keys")
    p.add_argument("--sig-proxy", default="true")
    p.add_argument("name")


@command("attach", "Attach local standard input, output, and error streams to a running "
         "container")(_attach_args)
def attach(c: Client, a: Args) -> int:
    info_ = c.json("GET", f"/containers/{a.name}/json")
    if not info_["State"]["Running"]:  # as the docker CLI, before asking the daemon
        die("You cannot attach to a stopped container, start it first", 1)
    tty = bool(info_["Config"].get("Tty"))
    stdin = bool(info_["Config"].get("OpenStdin")) and not a.no_stdin
    waiter = c.request("POST", f"/containers/{info_['Id']}/wait",
                       {"condition": "next-exit"}, stream=True)
    sock = c.hijack(f"/containers/{a.name}/attach", {
        "stream": True, "stdin": stdin, "stdout": True, "stderr": True,
        "detachKeys": a.detach_keys})
    if a.sig_proxy.lower() in ("true", "1") and not tty:
        _proxy_signals(c, info_["Id"])
    with _terminal(tty and stdin and sys.stdin.isatty()):
        _pump(c, sock, stdin, tty, lambda h, w: c.request(
            "POST", f"/containers/{a.name}/resize", {"h": h, "w": w}))
    return _exit_code(c, info_["Id"], waiter, stdin)


def _stats_args(p: Parser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")
    p.add_argument("names", nargs="*")


def _stats_row(s: dict[str, Any], name: str, no_trunc: bool) -> dict[str, str]:
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    d_cpu = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        pre.get("cpu_usage") or {}).get("total_usage", 0)
    d_sys = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    ncpu = cpu.get("online_cpus") or 1
    cpu_pct = (d_cpu / d_sys * ncpu * 100) if d_sys > 0 and d_cpu > 0 else 0.0
    mem = s.get("memory_stats") or {}
    usage = (mem.get("usage") or 0) - ((mem.get("stats") or {}).get("total_inactive_file")
                                      or (mem.get("stats") or {}).get("inactive_file") or 0)
    limit = mem.get("limit") or 0
    net = s.get("networks") or {}
    rx = sum(n.get("rx_bytes", 0) for n in net.values())
    tx = sum(n.get("tx_bytes", 0) for n in net.values())
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    rd = sum(b.get("value", 0) for b in blk if str(b.get("op")).lower() == "read")
    wr = sum(b.get("value", 0) for b in blk if str(b.get("op")).lower() == "write")
    cid = s.get("id", "")
    return {"ID": cid if no_trunc else cid[:12], "Name": name, "Container": name,
            "CPUPerc": f"{cpu_pct:.2f}%",
            "MemUsage": f"{_bin_size(usage)} / {_bin_size(limit)}",
            "MemPerc": f"{(usage / limit * 100) if limit else 0:.2f}%",
            "NetIO": f"{fmt.human_size(rx)} / {fmt.human_size(tx)}",
            "BlockIO": f"{fmt.human_size(rd)} / {fmt.human_size(wr)}",
            "PIDs": str((s.get("pids_stats") or {}).get("current", 0))}


def _bin_size(n: float) -> str:
    """go-units BytesSize: binary units (KiB, MiB…) with two decimals."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}" if i else f"{n:g}B"


STATS_HEADERS = {"ID": "CONTAINER ID", "Name": "NAME", "Container": "CONTAINER",
                 "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
                 "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}


@command("stats", "Display a live stream of container(s) resource usage statistics")(
    _stats_args)
def stats(c: Client, a: Args) -> int:
    names = a.names or [x["Names"][0].lstrip("/") for x in c.json(
        "GET", "/containers/json", {"all": a.all or None})]
    template = a.format or ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t"
                            "{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")
    while True:
        rows = [_stats_row(c.json("GET", f"/containers/{n}/stats", {"stream": False}), n,
                           a.no_trunc) for n in names]
        if not a.no_stream:
            sys.stdout.write("\x1b[2J\x1b[H")
        sys.stdout.write(fmt.formatted(template, rows, STATS_HEADERS))
        sys.stdout.flush()
        if a.no_stream:
            return 0
        time.sleep(1)


def _cp_args(p: Parser) -> None:
    p.add_argument("-a", "--archive", action="store_true")
    p.add_argument("-L", "--follow-link", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("src")
    p.add_argument("dst")


def _split(arg: str) -> tuple[str, str] | None:
    if ":" in arg and not arg.startswith(("/", ".")):
        name, _, path = arg.partition(":")
        return name, path
    return None


@command("cp", "Copy files/folders between a container and the local filesystem")(_cp_args)
def cp(c: Client, a: Args) -> int:
    import io
    import tarfile

    src, dst = _split(a.src), _split(a.dst)
    if (src is None) == (dst is None):
        die("copying between containers or between local paths is not supported", 1)
    if src is not None:
        name, path = src
        r = c.request("GET", f"/containers/{name}/archive", {"path": path}, stream=True)
        base = os.path.abspath(a.dst)
        into = os.path.isdir(base)
        root = base if into else os.path.dirname(base)
        stream: Any = r  # a Response reads as a file does
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for m in tar:
                # the archive's top entry is the copied path; it lands at DEST (or in it)
                rel = m.name.split("/", 1)[1] if "/" in m.name else ""
                target = os.path.normpath(os.path.join(base, m.name) if into else
                                          os.path.join(base, rel) if rel else base)
                # a container's archive must not write outside the destination
                if not (target == root or target.startswith(root.rstrip("/") + "/")):
                    die(f"refusing {m.name!r}: it would land outside {root}", 1)
                if (m.issym() or m.islnk()) and (os.path.isabs(m.linkname) or ".." in
                                                 m.linkname.split("/")) and m.islnk():
                    die(f"refusing hard link {m.name!r} -> {m.linkname!r}", 1)
                m.name = os.path.relpath(target, root)
                if m.islnk():
                    m.linkname = os.path.relpath(os.path.join(
                        base if into else root, m.linkname), root)
                if not a.archive:
                    m.uid, m.gid, m.uname, m.gname = os.getuid(), os.getgid(), "", ""
                tar.extract(m, path=root, set_attrs=True)
        return 0
    assert dst is not None
    name, path = dst
    # as the docker CLI: into an existing directory under the source's name, else as the
    # destination's own name in its parent
    arcname = os.path.basename(a.src.rstrip("/")) or "."
    try:
        st = c.request("HEAD", f"/containers/{name}/archive", {"path": path})
        import base64

        mode = json.loads(base64.b64decode(st.getheader("X-Docker-Container-Path-Stat")
                                           or "e30="))["mode"]
        if not mode & (1 << 31):  # a file: replaced, under its own name
            path, arcname = os.path.dirname(path.rstrip("/")) or "/", os.path.basename(path)
    except ApiError as e:
        if e.status != 404:
            raise
        path, arcname = os.path.dirname(path.rstrip("/")) or "/", os.path.basename(
            path.rstrip("/"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(a.src, arcname=arcname)
    c.request("PUT", f"/containers/{name}/archive", {"path": path},
              raw_body=buf.getvalue(), headers={"Content-Type": "application/x-tar"})
    return 0


def _out_args(p: Parser) -> None:
    p.add_argument("-o", "--output")
    p.add_argument("names", nargs="+")


def _to_output(r: Any, output: str | None) -> None:
    out = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
    try:
        while chunk := r.read(1 << 20):
            out.write(chunk)
    finally:
        if output:
            out.close()


@command("export", "Export a container's filesystem as a tar archive")(_out_args)
def export(c: Client, a: Args) -> int:
    if a.output is None and sys.stdout.isatty():
        die("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    _to_output(c.request("GET", f"/containers/{a.names[0]}/export", stream=True), a.output)
    return 0


@command("save", "Save one or more images to a tar archive")(_out_args)
def save(c: Client, a: Args) -> int:
    if a.output is None and sys.stdout.isatty():
        die("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    from matou.client.transport import urlencode

    r = c.request("GET", "/images/get?" + urlencode([("names", n) for n in a.names]),
                  stream=True)
    _to_output(r, a.output)
    return 0


def _load_args(p: Parser) -> None:
    p.add_argument("-i", "--input")
    p.add_argument("-q", "--quiet", action="store_true")


@command("load", "Load an image from a tar archive or STDIN")(_load_args)
def load(c: Client, a: Args) -> int:
    data = open(a.input, "rb").read() if a.input else sys.stdin.buffer.read()  # noqa: SIM115
    r = c.request("POST", "/images/load", {"quiet": a.quiet or None}, raw_body=data,
                  headers={"Content-Type": "application/x-tar"}, stream=True)
    for msg in c.json_stream(r):
        if msg.get("error"):
            die(msg["error"], 1)
        if msg.get("stream"):
            sys.stdout.write(msg["stream"])
    return 0


def _import_args(p: Parser) -> None:
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message")
    p.add_argument("file")
    p.add_argument("reference", nargs="?")


@command("import", "Import the contents from a tarball to create a filesystem image")(
    _import_args)
def import_(c: Client, a: Args) -> int:
    data = sys.stdin.buffer.read() if a.file == "-" else open(a.file, "rb").read()  # noqa: SIM115
    repo, tag = (a.reference.rpartition(":")[0::2] if a.reference and ":" in
                 a.reference.rsplit("/", 1)[-1] else (a.reference or "", ""))
    from matou.client.transport import urlencode

    q = [("fromSrc", "-"), ("repo", repo), ("tag", tag), ("message", a.message or "")]
    q += [("changes", ch) for ch in a.change]
    r = c.request("POST", "/images/create?" + urlencode(q), raw_body=data, stream=True,
                  headers={"Content-Type": "application/x-tar"})
    for msg in c.json_stream(r):
        if msg.get("error"):
            die(msg["error"], 1)
        if msg.get("status"):
            print(msg["status"])
    return 0


def _commit_args(p: Parser) -> None:
    p.add_argument("-a", "--author")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message")
    p.add_argument("-p", "--pause", default="true")
    p.add_argument("name")
    p.add_argument("reference", nargs="?")


@command("commit", "Create a new image from a container's changes")(_commit_args)
def commit(c: Client, a: Args) -> int:
    repo, tag = (a.reference.rpartition(":")[0::2] if a.reference and ":" in
                 a.reference.rsplit("/", 1)[-1] else (a.reference or None, None))
    r = c.json("POST", "/commit", {"container": a.name, "repo": repo, "tag": tag,
                                   "comment": a.message, "author": a.author,
                                   "changes": "\n".join(a.change) or None})
    print(r["Id"])
    return 0


def _update_args(p: Parser) -> None:
    p.add_argument("-m", "--memory")
    p.add_argument("--cpus", type=float)
    p.add_argument("--cpu-shares", type=int)
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--restart")
    p.add_argument("names", nargs="+")


@command("update", "Update configuration of one or more containers")(_update_args)
def update(c: Client, a: Args) -> int:
    body: dict[str, Any] = {}
    if a.memory:
        body["Memory"] = _size(a.memory)
    if a.cpus:
        body["NanoCpus"] = int(a.cpus * 1e9)
    if a.cpu_shares is not None:
        body["CpuShares"] = a.cpu_shares
    if a.pids_limit is not None:
        body["PidsLimit"] = a.pids_limit
    if a.restart:
        name, _, count = a.restart.partition(":")
        body["RestartPolicy"] = {"Name": name, "MaximumRetryCount": int(count or 0)}
    return _each(c, a.names, lambda n: c.json("POST", f"/containers/{n}/update", body=body))


def _prune_args(p: Parser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    p.add_argument("--volumes", action="store_true")


def _confirm(a: Args, what: str) -> bool:
    if a.force:
        return True
    print(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ",
          end="", flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _pruned(space: int, output: str, total: bool = True) -> int:
    """What a prune command prints: its report, then the space it freed (docker's
    layout: the report and a blank line, then the total)."""
    if output:
        print(output)
    if total:
        print(f"Total reclaimed space: {fmt.human_size(space)}")
    return 0


def _deleted(title: str, items: list[str]) -> str:
    return f"{title}:\n" + "".join(f"{x}\n" for x in items) if items else ""


def _prune_containers(c: Client, a: Args) -> tuple[int, str]:
    r = c.json("POST", "/containers/prune", {"filters": _filters(a.filter)})
    return (r.get("SpaceReclaimed") or 0,
            _deleted("Deleted Containers", r.get("ContainersDeleted") or []))


def _prune_images(c: Client, a: Args) -> tuple[int, str]:
    f = _filters(a.filter) or {}
    f["dangling"] = ["false" if a.all else "true"]
    r = c.json("POST", "/images/prune", {"filters": f})
    lines = [f"{k.lower()}: {v}" for d in r.get("ImagesDeleted") or [] for k, v in d.items()]
    return r.get("SpaceReclaimed") or 0, _deleted("Deleted Images", lines)


def _prune_volumes(c: Client, a: Args) -> tuple[int, str]:
    f = _filters(a.filter) or {}
    if a.all:
        f["all"] = ["true"]
    r = c.json("POST", "/volumes/prune", {"filters": f or None})
    return (r.get("SpaceReclaimed") or 0,
            _deleted("Deleted Volumes", r.get("VolumesDeleted") or []))


def _prune_networks(c: Client, a: Args) -> tuple[int, str]:
    r = c.json("POST", "/networks/prune", {"filters": _filters(a.filter)})
    return 0, _deleted("Deleted Networks", r.get("NetworksDeleted") or [])


def _prune_build_cache(c: Client, a: Args) -> tuple[int, str]:
    r = c.json("POST", "/build/prune", {"all": a.all, "filters": _filters(a.filter)})
    return (r.get("SpaceReclaimed") or 0,
            _deleted("Deleted build cache objects", r.get("CachesDeleted") or []))


@command("container-prune", "Remove all stopped containers")(_prune_args)
def container_prune(c: Client, a: Args) -> int:
    if not _confirm(a, "all stopped containers"):
        return 0
    return _pruned(*_prune_containers(c, a))


@command("image-prune", "Remove unused images")(_prune_args)
def image_prune(c: Client, a: Args) -> int:
    if not _confirm(a, "all dangling images" if not a.all else
                    "all images without at least one container associated to them"):
        return 0
    return _pruned(*_prune_images(c, a))


@command("volume-prune", "Remove unused local volumes")(_prune_args)
def volume_prune(c: Client, a: Args) -> int:
    if not _confirm(a, "anonymous local volumes not used by at least one container"
                    if not a.all else "all local volumes not used by at least one container"):
        return 0
    return _pruned(*_prune_volumes(c, a))


@command("network-prune", "Remove all unused networks")(_prune_args)
def network_prune(c: Client, a: Args) -> int:
    if not _confirm(a, "all custom networks not used by at least one container"):
        return 0
    return _pruned(*_prune_networks(c, a), total=False)


@command("system-prune", "Remove unused data")(_prune_args)
def system_prune(c: Client, a: Args) -> int:
    if not _confirm(a, "all stopped containers, unused networks and dangling images"):
        return 0
    space = 0
    for prune in (_prune_containers, _prune_networks, *((_prune_volumes,) if a.volumes
                                                         else ()),
                  _prune_images, _prune_build_cache):
        freed, output = prune(c, a)
        space += freed
        _pruned(0, output, total=False)
    return _pruned(space, "")


def _df_args(p: Parser) -> None:
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--format")


def _share(part: int, whole: int) -> str:
    """docker system df's RECLAIMABLE: a size, and its share of the whole when any."""
    text = fmt.human_size(part, 4)
    return f"{text} ({int(part * 100 / whole)}%)" if whole > 0 else text


@command("system-df", "Show matou disk usage")(_df_args)
def system_df(c: Client, a: Args) -> int:
    d = c.json("GET", "/system/df")
    imgs, ctrs = d.get("Images") or [], d.get("Containers") or []
    vols = d.get("Volumes") or []
    layers = d.get("LayersSize") or 0
    used = sum(i.get("Size", 0) - i.get("SharedSize", 0) for i in imgs
               if i.get("Containers") and i.get("SharedSize", -1) >= 0)
    volume_sizes = [((v.get("UsageData") or {}).get("Size") or 0,
                     (v.get("UsageData") or {}).get("RefCount") or 0) for v in vols]
    rows = [
        {"Type": "Images", "TotalCount": str(len(imgs)),
         "Active": str(sum(1 for i in imgs if (i.get("Containers") or 0) > 0)),
         "Size": fmt.human_size(layers, 4),
         "Reclaimable": _share(layers - used, layers)},
        {"Type": "Containers", "TotalCount": str(len(ctrs)),
         "Active": str(sum(1 for x in ctrs if x.get("State") == "running")),
         "Size": fmt.human_size(sum(x.get("SizeRw") or 0 for x in ctrs), 4),
         "Reclaimable": _share(sum(x.get("SizeRw") or 0 for x in ctrs
                                   if x.get("State") != "running"),
                               sum(x.get("SizeRw") or 0 for x in ctrs))},
        {"Type": "Local Volumes", "TotalCount": str(len(vols)),
         "Active": str(sum(1 for _, refs in volume_sizes if refs > 0)),
         "Size": fmt.human_size(sum(max(size, 0) for size, _ in volume_sizes), 4),
         "Reclaimable": _share(sum(size for size, refs in volume_sizes if refs == 0),
                               sum(max(size, 0) for size, _ in volume_sizes))},
        {"Type": "Build Cache", "TotalCount": "0", "Active": "0", "Size": "0B",
         "Reclaimable": "0B"}]
    if a.verbose and not a.format:
        sys.stdout.write(_df_verbose(imgs, ctrs, vols))
        return 0
    sys.stdout.write(fmt.formatted(
        a.format or "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t"
                    "{{.Reclaimable}}", rows,
        {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
         "Reclaimable": "RECLAIMABLE"}))
    return 0


def _df_verbose(imgs: list[dict[str, Any]], ctrs: list[dict[str, Any]],
                vols: list[dict[str, Any]]) -> str:
    """`system df -v`: the images, containers, volumes and build cache, one table each."""
    def shared(i: dict[str, Any]) -> tuple[str, str]:
        if i.get("SharedSize", -1) < 0:
            return "N/A", "N/A"
        return (fmt.human_size(i["SharedSize"], 4),
                fmt.human_size(i.get("Size", 0) - i["SharedSize"], 4))

    image_rows = [["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE",
                   "UNIQUE SIZE", "CONTAINERS"]]
    for i in imgs:  # an image once, under its first name (as docker shows it)
        repo, _, tag = (i.get("RepoTags") or ["<none>:<none>"])[0].rpartition(":")
        image_rows.append([repo, tag, i["Id"].split(":", 1)[-1][:12],
                           fmt.ago(i.get("Created", 0)), fmt.human_size(i.get("Size", 0)),
                           *shared(i), str(i.get("Containers", 0))])
    container_rows = [["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED",
                       "STATUS", "NAMES"]]
    for x in ctrs:
        row = _ps_row(x, False)
        volumes = sum(1 for m in x.get("Mounts") or [] if m.get("Type") == "volume")
        container_rows.append([row["ID"], row["Image"], row["Command"], str(volumes),
                               fmt.human_size(x.get("SizeRw") or 0, 4), row["RunningFor"],
                               row["Status"], row["Names"]])
    volume_rows = [["VOLUME NAME", "LINKS", "SIZE"]] + [
        [v["Name"], str((v.get("UsageData") or {}).get("RefCount") or 0),
         fmt.human_size(max((v.get("UsageData") or {}).get("Size") or 0, 0), 4)]
        for v in vols]
    return ("Images space usage:\n\n" + fmt.table(image_rows) +
            "\nContainers space usage:\n\n" + fmt.table(container_rows) +
            "\nLocal Volumes space usage:\n\n" + fmt.table(volume_rows) +
            "\nBuild cache usage: 0B\n\n" +
            fmt.table([["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE",
                        "SHARED"]]))


def _events_args(p: Parser) -> None:
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")


@command("events", "Get real time events from the server")(_events_args)
def events(c: Client, a: Args) -> int:
    r = c.request("GET", "/events", {"since": _when(a.since), "until": _when(a.until),
                                      "filters": _filters(a.filter)}, stream=True)
    for ev in c.json_stream(r):
        if a.format:
            print(fmt.render(a.format, ev), flush=True)
            continue
        attrs = (ev.get("Actor") or {}).get("Attributes") or {}
        when = ev.get("timeNano", 0)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when // 10**9)) + \
            f".{when % 10**9:09d}" + time.strftime("%z", time.localtime(when // 10**9))
        stamp = stamp[:-2] + ":" + stamp[-2:]
        print(f"{stamp} {ev.get('Type')} {ev.get('Action')} "
              f"{(ev.get('Actor') or {}).get('ID', '')} "
              f"({', '.join(f'{k}={v}' for k, v in sorted(attrs.items()))})", flush=True)
    return 0


@command("image-inspect", "Display detailed information on one or more images")(
    _objects_args)
def image_inspect(c: Client, a: Args) -> int:
    _print_objects([c.json("GET", f"/images/{n}/json") for n in a.names], a.format)
    return 0


def _search_args(p: Parser) -> None:
    p.add_argument("--limit", type=int)
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("term")


@command("search", "Search Docker Hub (or a registry) for images")(_search_args)
def search(c: Client, a: Args) -> int:
    rows = c.json("GET", "/images/search", {"term": a.term, "limit": a.limit})
    sys.stdout.write(fmt.table([["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]] + [
        [r.get("name", ""), r.get("description", "") if a.no_trunc else
         fmt.truncate(r.get("description", ""), 45), str(r.get("star_count", 0)),
         "[OK]" if r.get("is_official") else ""] for r in rows]))
    return 0


# -- images ------------------------------------------------------------------------------

def _images_args(p: Parser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--digests", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("repo", nargs="?")


IMAGE_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                 "Digest": "DIGEST"}


@command("images", "List images")(_images_args)
def images(c: Client, a: Args) -> int:
    filters = _filters(a.filter) or {}
    if a.repo:
        filters["reference"] = [a.repo]
    items = c.json("GET", "/images/json", {"all": a.all or None, "filters": filters or None})
    rows = []
    for img in items:
        tags = img.get("RepoTags") or ["<none>:<none>"]
        digests = dict(d.split("@", 1) for d in img.get("RepoDigests") or [] if "@" in d)
        for t in tags:
            repo, _, tag = t.rpartition(":")
            iid = img["Id"] if a.no_trunc else img["Id"].split(":", 1)[-1][:12]
            rows.append({"Repository": repo, "Tag": tag, "ID": iid,
                         "CreatedSince": fmt.ago(img.get("Created", 0)),
                         "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z",
                                                    time.localtime(img.get("Created", 0))),
                         "Size": fmt.human_size(img.get("Size", 0)),
                         "Digest": digests.get(repo, "<none>")})
    if a.quiet:
        seen = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
                print(r["ID"])
        return 0
    template = a.format or ("table {{.Repository}}\t{{.Tag}}\t" +
                            ("{{.Digest}}\t" if a.digests else "") +
                            "{{.ID}}\t{{.CreatedSince}}\t{{.Size}}")
    sys.stdout.write(fmt.formatted(template, rows, IMAGE_HEADERS))
    return 0


def _tag_args(p: Parser) -> None:
    p.add_argument("source")
    p.add_argument("target")


@command("tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")(_tag_args)
def tag(c: Client, a: Args) -> int:
    repo, _, t = a.target.rpartition(":") if ":" in a.target.rsplit("/", 1)[-1] else (
        a.target, "", "latest")
    c.request("POST", f"/images/{a.source}/tag", {"repo": repo, "tag": t})
    return 0


def _rmi_args(p: Parser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--no-prune", action="store_true")
    p.add_argument("names", nargs="+")


@command("rmi", "Remove one or more images")(_rmi_args)
def rmi(c: Client, a: Args) -> int:
    code = 0
    for n in a.names:
        try:
            for item in c.json("DELETE", f"/images/{n}", {"force": a.force or None,
                                                          "noprune": a.no_prune or None}):
                for k, v in item.items():
                    print(f"{k}: {v}")
        except ApiError as e:
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
            code = 1
    return code


def _pull_args(p: Parser) -> None:
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("image")


@command("pull", "Download an image from a registry")(_pull_args)
def pull(c: Client, a: Args) -> int:
    tagged = ":" in a.image.rsplit("/", 1)[-1] or "@" in a.image
    ref = a.image if tagged else f"{a.image}:latest"
    if a.quiet:
        with open(os.devnull, "w") as quiet:
            pull_image(c, ref, quiet)
    else:
        if not tagged:
            print("Using default tag: latest")
        pull_image(c, ref)
    print(_canonical(ref))
    return 0


def _canonical(ref: str) -> str:
    """The full name docker prints after a pull: docker.io/library/busybox:latest."""
    first, slash, _ = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"docker.io/{ref}" if slash else f"docker.io/library/{ref}"


@command("push", "Upload an image to a registry")(_pull_args)
def push(c: Client, a: Args) -> int:
    name, _, tag = a.image.rpartition(":") if ":" in a.image.rsplit("/", 1)[-1] else (
        a.image, "", "")
    r = c.request("POST", f"/images/{name}/push", {"tag": tag or None}, stream=True,
                  headers=_auth_header(a.image))
    try:
        show_progress(c, r, open(os.devnull, "w") if a.quiet else sys.stdout)  # noqa: SIM115
    except ApiError as e:
        die(e.message, 1)
    if a.quiet:
        print(a.image)
    return 0


def _login_args(p: Parser) -> None:
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("server", nargs="?", default="https://index.docker.io/v1/")


@command("login", "Authenticate to a registry")(_login_args)
def login(c: Client, a: Args) -> int:
    import base64

    user = a.username or input("Username: ")
    password = sys.stdin.readline().rstrip("\n") if a.password_stdin else (
        a.password if a.password is not None else __import__("getpass").getpass("Password: "))
    c.json("POST", "/auth", body={"username": user, "password": password,
                                  "serveraddress": a.server})
    config = _read_config()
    config.setdefault("auths", {})[a.server] = {
        "auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    _write_config(config)
    print("Login Succeeded")
    return 0


def _logout_args(p: Parser) -> None:
    p.add_argument("server", nargs="?", default="https://index.docker.io/v1/")


@command("logout", "Log out from a registry")(_logout_args)
def logout(c: Client, a: Args) -> int:
    config = _read_config()
    if (config.get("auths") or {}).pop(a.server, None) is None:
        print(f"Not logged in to {a.server}")
        return 0
    _write_config(config)
    print(f"Removing login credentials for {a.server}")
    return 0


def _history_args(p: Parser) -> None:
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format")
    p.add_argument("image")


@command("history", "Show the history of an image")(_history_args)
def history(c: Client, a: Args) -> int:
    rows = []
    for h in c.json("GET", f"/images/{a.image}/history"):
        iid = h["Id"] if a.no_trunc or h["Id"] == "<missing>" else h["Id"].split(":")[-1][:12]
        by = h.get("CreatedBy", "")
        rows.append({"ID": iid, "CreatedSince": fmt.ago(h.get("Created", 0)),
                     "CreatedBy": by if a.no_trunc else fmt.truncate(by, 45),
                     "Size": fmt.human_size(h.get("Size", 0)),
                     "Comment": h.get("Comment", "")})
    if a.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    template = a.format or ("table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t"
                            "{{.Comment}}")
    sys.stdout.write(fmt.formatted(template, rows, {
        "ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY",
        "Size": "SIZE", "Comment": "COMMENT"}))
    return 0


# -- volumes and networks ---------------------------------------------------------------

def _ls_args(p: Parser) -> None:
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("--no-trunc", action="store_true")


@command("volume-ls", "List volumes")(_ls_args)
def volume_ls(c: Client, a: Args) -> int:
    vols = c.json("GET", "/volumes", {"filters": _filters(a.filter)})["Volumes"] or []
    if a.quiet:
        for v in vols:
            print(v["Name"])
        return 0
    sys.stdout.write(fmt.formatted(a.format or "table {{.Driver}}\t{{.Name}}", vols,
                                   {"Driver": "DRIVER", "Name": "VOLUME NAME",
                                    "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE"}))
    return 0


def _volume_create_args(p: Parser) -> None:
    p.add_argument("-d", "--driver", default="local")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("name", nargs="?")


@command("volume-create", "Create a volume")(_volume_create_args)
def volume_create(c: Client, a: Args) -> int:
    v = c.json("POST", "/volumes/create", body={
        "Name": a.name or "", "Driver": a.driver,
        "Labels": dict(x.split("=", 1) if "=" in x else (x, "") for x in a.label),
        "DriverOpts": dict(x.split("=", 1) for x in a.opt)})
    print(v["Name"])
    return 0


def _volume_rm_args(p: Parser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")


@command("volume-rm", "Remove one or more volumes")(_volume_rm_args)
def volume_rm(c: Client, a: Args) -> int:
    return _each(c, a.names, lambda n: c.request("DELETE", f"/volumes/{n}",
                                                 {"force": a.force or None}))


@command("volume-inspect", "Display detailed information on one or more volumes")(
    _objects_args)
def volume_inspect(c: Client, a: Args) -> int:
    _print_objects([c.json("GET", f"/volumes/{n}") for n in a.names], a.format)
    return 0


@command("network-ls", "List networks")(_ls_args)
def network_ls(c: Client, a: Args) -> int:
    nets = sorted(c.json("GET", "/networks", {"filters": _filters(a.filter)}),
                  key=lambda n: n["Name"])
    if a.quiet:
        for n in nets:
            print(n["Id"] if a.no_trunc else n["Id"][:12])
        return 0
    rows = [{**n, "ID": n["Id"] if a.no_trunc else n["Id"][:12]} for n in nets]
    sys.stdout.write(fmt.formatted(
        a.format or "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", rows,
        {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE"}))
    return 0


def _network_create_args(p: Parser) -> None:
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", action="append", default=[])
    p.add_argument("--gateway", action="append", default=[])
    p.add_argument("--ip-range", action="append", default=[])
    p.add_argument("--internal", action="store_true")
    p.add_argument("--attachable", action="store_true")
    p.add_argument("--ipv6", action="store_true")
    p.add_argument("--aux-address", action="append", default=[])
    p.add_argument("--ipam-driver", default="default")
    p.add_argument("--ipam-opt", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("name")


@command("network-create", "Create a network")(_network_create_args)
def network_create(c: Client, a: Args) -> int:
    import ipaddress

    def within(addr: str, subnet: str) -> bool:  # docker pairs each value with its subnet
        try:
            net = ipaddress.ip_network(subnet, strict=False)
            if "/" in addr:
                other = ipaddress.ip_network(addr, strict=False)
                return other.version == net.version and other.subnet_of(net)  # type: ignore[arg-type]
            return ipaddress.ip_address(addr) in net
        except ValueError:
            return False

    configs: list[dict[str, Any]] = []
    for subnet in a.subnet:
        conf: dict[str, Any] = {"Subnet": subnet}
        gateway = [g for g in a.gateway if within(g, subnet)]
        ip_range = [r for r in a.ip_range if within(r, subnet)]
        aux = dict(x.split("=", 1) for x in a.aux_address
                   if "=" in x and within(x.split("=", 1)[1], subnet))
        if gateway:
            conf["Gateway"] = gateway[0]
        if ip_range:
            conf["IPRange"] = ip_range[0]
        if aux:
            conf["AuxiliaryAddresses"] = aux
        configs.append(conf)
    body = {
        "Name": a.name, "Driver": a.driver, "Internal": a.internal,
        "Attachable": a.attachable, "IPAM": {
            "Driver": a.ipam_driver, "Config": configs,
            "Options": dict(x.split("=", 1) for x in a.ipam_opt) or None},
        "Options": dict(x.split("=", 1) for x in a.opt),
        "Labels": dict(x.split("=", 1) if "=" in x else (x, "") for x in a.label)}
    if a.ipv6:
        body["EnableIPv6"] = True
    r = c.json("POST", "/networks/create", body=body)
    print(r["Id"])
    return 0


@command("network-rm", "Remove one or more networks")(_names_args)
def network_rm(c: Client, a: Args) -> int:
    return _each(c, a.names, lambda n: c.request("DELETE", f"/networks/{n}"))


@command("network-inspect", "Display detailed information on one or more networks")(
    _objects_args)
def network_inspect(c: Client, a: Args) -> int:
    _print_objects([c.json("GET", f"/networks/{n}") for n in a.names], a.format)
    return 0


def _connect_args(p: Parser) -> None:
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network")
    p.add_argument("container")


@command("network-connect", "Connect a container to a network")(_connect_args)
def network_connect(c: Client, a: Args) -> int:
    ep: dict[str, Any] = {"Aliases": a.alias or None}
    if a.ip:
        ep["IPAMConfig"] = {"IPv4Address": a.ip}
    c.request("POST", f"/networks/{a.network}/connect",
              body={"Container": a.container, "EndpointConfig": ep})
    return 0


@command("network-disconnect", "Disconnect a container from a network")(_connect_args)
def network_disconnect(c: Client, a: Args) -> int:
    c.request("POST", f"/networks/{a.network}/disconnect",
              body={"Container": a.container, "Force": a.force})
    return 0


# -- contexts (docker's store, shared with the docker CLI) --------------------------------

def _context_ls_args(p: Parser) -> None:
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format")


@command("context-ls", "List contexts")(_context_ls_args)
def context_ls(c: Client, a: Args) -> int:
    from matou.cli import contexts

    rows = []
    for name in sorted([contexts.DEFAULT, *contexts.names()]):
        meta = contexts.load(name)
        endpoint = ((meta.get("Endpoints") or {}).get("docker") or {}).get("Host", "")
        current = name == c.context
        rows.append({"Name": name + (" *" if current and not a.format else ""),
                     "Current": current,
                     "Description": (meta.get("Metadata") or {}).get("Description", ""),
                     "DockerEndpoint": endpoint, "Error": ""})
    if a.quiet:
        print("\n".join(r["Name"].removesuffix(" *") for r in rows))
        return 0
    sys.stdout.write(fmt.formatted(
        a.format or "table {{.Name}}\t{{.Description}}\t{{.DockerEndpoint}}\t{{.Error}}",
        rows, {"Name": "NAME", "Description": "DESCRIPTION", "DockerEndpoint":
               "DOCKER ENDPOINT", "Error": "ERROR", "Current": "CURRENT"}))
    return 0


def _context_create_args(p: Parser) -> None:
    p.add_argument("--description", default="")
    p.add_argument("--docker", default="")
    p.add_argument("name")


@command("context-create", "Create a context")(_context_create_args)
def context_create(c: Client, a: Args) -> int:
    from matou.cli import contexts

    fields = dict(f.partition("=")[::2] for f in a.docker.split(",") if f)
    try:
        contexts.create(a.name, a.description, fields)
    except (contexts.ContextError, OSError) as e:
        die(str(e), 1)
    print(a.name)
    print(f'Successfully created context "{a.name}"', file=sys.stderr)
    return 0


def _context_names_args(p: Parser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+", metavar="CONTEXT")


@command("context-rm", "Remove one or more contexts")(_context_names_args)
def context_rm(c: Client, a: Args) -> int:
    from matou.cli import contexts

    code = 0
    for name in a.names:
        try:
            if name == _read_config().get("currentContext"):
                if not a.force:
                    raise contexts.ContextError(
                        f"context \"{name}\" is in use, set -f flag to force remove")
                config = _read_config()
                config.pop("currentContext", None)
                _write_config(config)
            contexts.remove(name)
            print(name)
        except contexts.ContextError as e:
            print(str(e), file=sys.stderr)
            code = 1
    return code


def _context_name_args(p: Parser) -> None:
    p.add_argument("name", metavar="CONTEXT")


@command("context-use", "Set the current docker context")(_context_name_args)
def context_use(c: Client, a: Args) -> int:
    from matou.cli import contexts

    try:
        contexts.load(a.name)
    except contexts.ContextError as e:
        die(str(e), 1)
    config = _read_config()
    if a.name == contexts.DEFAULT:
        config.pop("currentContext", None)
    else:
        config["currentContext"] = a.name
    _write_config(config)
    print(a.name)
    print(f'Current context is now "{a.name}"', file=sys.stderr)
    if os.environ.get("DOCKER_HOST"):
        print("Warning: DOCKER_HOST environment variable overrides the active context. To "
              "use a context, either set the global --context flag, or unset DOCKER_HOST "
              "environment variable.", file=sys.stderr)
    return 0


def _context_inspect_args(p: Parser) -> None:
    p.add_argument("-f", "--format")
    p.add_argument("names", nargs="*", metavar="CONTEXT")


@command("context-inspect", "Display detailed information on one or more contexts")(
    _context_inspect_args)
def context_inspect(c: Client, a: Args) -> int:
    from matou.cli import contexts

    out = []
    for name in a.names or [c.context]:
        try:
            meta = contexts.load(name)
        except contexts.ContextError as e:
            die(str(e), 1)
        docker = (meta.get("Endpoints") or {}).get("docker") or {}
        out.append({"Name": name, "Metadata": meta.get("Metadata") or {},
                    "Endpoints": {"docker": {"Host": docker.get("Host", ""),
                                             "SkipTLSVerify": bool(docker.get(
                                                 "SkipTLSVerify"))}},
                    "TLSMaterial": {}, "Storage": {
                        "MetadataPath": "<IN MEMORY>" if name == contexts.DEFAULT else
                        os.path.dirname(contexts._meta_path(name)),
                        "TLSPath": "<IN MEMORY>" if name == contexts.DEFAULT else
                        os.path.dirname(contexts._tls_dir(name))}})
    if a.format:
        for item in out:
            print(fmt.render(a.format, item))
        return 0
    import json as indenting

    print(indenting.dumps(out, indent=4))
    return 0


@command("context-show", "Print the name of the current context")(_none)
def context_show(c: Client, a: Args) -> int:
    print(c.context)
    return 0


# -- the entry point ------------------------------------------------------------------------

def parser() -> Parser:
    p = Parser(prog="matou", description="matou: a Docker-compatible container engine's "
               "client")
    p.add_argument("-H", "--host", help="daemon socket (unix:///… or tcp://…); default "
                   "$MATOU_HOST, $DOCKER_HOST, unix:///run/matou/matou.sock")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--tlsverify", action="store_true")
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("-v", "--version", action="store_true")
    # accepted as docker accepts them; matou has one context and logs nothing client-side
    p.add_argument("-D", "--debug", action="store_true")
    p.add_argument("-l", "--log-level")
    p.add_argument("--config")
    p.add_argument("-c", "--context")
    p.add_argument("command", nargs=REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `matou ps | head`: the reader left; so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv: list[str]) -> int:
    top = parser()
    if argv[:1] in (["--help"], ["-h"], ["help"]):
        argv = []  # the usage with the commands, as `docker --help` shows them
    # global options first, then the command (management form mapped to the short one)
    g = top.parse_args(argv)
    rest = g.command
    if g.config:
        os.environ["DOCKER_CONFIG"] = g.config
    if g.version:
        rest = ["version", "--format", "matou version {{.Client.Version}}"]
    if not rest:
        top.print_help()
        print("\nManagement Commands:\n" + "".join(
            f"  {n:<20}Manage {'matou' if n == 'system' else n + 's'}\n"
            for n in sorted(MANAGEMENT)) +
            "\nCommands:\n" + "".join(f"  {n:<20}{h}\n" for n, (_, _, h) in
                                       sorted(COMMANDS.items()) if "-" not in n) +
            "\nRun 'matou COMMAND --help' for more information on a command.")
        return 0
    name = rest[0]
    if name in MANAGEMENT:
        if len(rest) < 2 or rest[1] in ("--help", "-h", "help"):
            print(f"Usage:  matou {name} COMMAND\n\nCommands:\n" + "".join(
                f"  {verb:<12}{COMMANDS[short][2]}\n"
                for verb, short in sorted(MANAGEMENT[name].items())) +
                f"\nRun 'matou {name} COMMAND --help' for more information on a command.")
            return 0
        if rest[1] not in MANAGEMENT[name]:
            die(f"matou: unknown command: matou {name} {rest[1]}\n\nUsage:  matou {name}\n\n"
                f"Run 'matou {name} --help' for more information", 1)
        prog = f"matou {name} {rest[1]}"
        name, rest = MANAGEMENT[name][rest[1]], rest[1:]
    else:
        prog = f"matou {name}"
    if name not in COMMANDS:
        die(f"matou: unknown command: matou {name}\n\nRun 'matou --help' for more "
            "information", 1)
    fn, add, help_ = COMMANDS[name]
    sub = Parser(prog=prog, description=help_)
    add(sub)
    args = sub.parse_args(rest[1:])
    from matou.client.transport import host_from_env, tls_from_env

    context = "default"
    if g.context or not (g.host or os.environ.get("DOCKER_HOST") or
                         os.environ.get("MATOU_HOST")):
        from matou.cli import contexts  # only when a context may be in play

        try:
            context = contexts.chosen(g.context, bool(g.host), _read_config())
            if context != contexts.DEFAULT and not name.startswith("context-"):
                host, tls = contexts.endpoint(context)
        except contexts.ContextError as e:
            die(str(e), 1)
    if context == "default" or name.startswith("context-"):
        host = host_from_env(g.host)
        tls = tls_from_env(g.tls, g.tlsverify, g.tlscacert, g.tlscert, g.tlskey)
    client = Client(host, tls)
    client.context = context
    try:
        return fn(client, args)
    except Unreachable as e:
        die(str(e), 1)
    except ApiError as e:
        if name == "run":  # docker's words and code for run alone
            die(f"matou: Error response from daemon: {e.message}\n\nRun 'matou run --help' "
                "for more information", 125)
        die(f"Error response from daemon: {e.message}", 1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
