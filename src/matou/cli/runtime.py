"""`matou-runtime`: runc's command line over matou.runtime.

Each verb is a thin adapter: parse, call the library, print. Modules are imported per
verb so that `state` or `kill` do not pay for what `create` needs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from matou.errors import InvalidArgument, MatouError
from matou.runtime import log
from matou.runtime.store import DEFAULT_ROOT, Store


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="matou-runtime",
                                description="matou's OCI runtime (runc-compatible CLI)")
    p.add_argument("--root", default=DEFAULT_ROOT, help="state directory (default %(default)s)")
    p.add_argument("--log", default="", help="log file (default: stderr)")
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--debug", action="store_true")
    p.add_argument("--systemd-cgroup", action="store_true",
                   help="read cgroupsPath as slice:prefix:name")
    p.add_argument("--rootless", default="auto", help="accepted for runc compatibility")
    p.add_argument("--criu", default="", help="accepted for runc compatibility")
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_)

    def create_flags(c: argparse.ArgumentParser) -> None:
        c.add_argument("-b", "--bundle", default=".")
        c.add_argument("--pid-file", default="")
        c.add_argument("--console-socket", default="")
        c.add_argument("--no-pivot", action="store_true")
        c.add_argument("--no-new-keyring", action="store_true")
        c.add_argument("--preserve-fds", type=int, default=0)
        c.add_argument("id")

    c = cmd("create", "create a container from an OCI bundle")
    create_flags(c)
    c = cmd("run", "create and start a container, wait for it, then delete it")
    c.add_argument("-d", "--detach", action="store_true")
    c.add_argument("--keep", action="store_true")
    create_flags(c)
    c = cmd("start", "start a created container")
    c.add_argument("id")
    c = cmd("exec", "run a new process in a container")
    c.add_argument("-p", "--process", default="")
    c.add_argument("-d", "--detach", action="store_true")
    c.add_argument("--pid-file", default="")
    c.add_argument("--console-socket", default="")
    c.add_argument("-t", "--tty", action="store_true")
    c.add_argument("--cwd", default="")
    c.add_argument("-e", "--env", action="append", default=[])
    c.add_argument("-u", "--user", default="")
    c.add_argument("-g", "--additional-gids", action="append", default=[], type=int)
    c.add_argument("-c", "--cap", action="append", default=[])
    c.add_argument("--no-new-privs", action="store_true")
    c.add_argument("--preserve-fds", type=int, default=0)
    c.add_argument("--process-label", default="")
    c.add_argument("--apparmor", default="")
    c.add_argument("id")
    c.add_argument("command", nargs=argparse.REMAINDER)
    c = cmd("kill", "send a signal to a container")
    c.add_argument("-a", "--all", action="store_true")
    c.add_argument("id")
    c.add_argument("signal", nargs="?", default="SIGTERM")
    c = cmd("delete", "delete a stopped container")
    c.add_argument("-f", "--force", action="store_true")
    c.add_argument("id")
    c = cmd("state", "print a container's state as JSON")
    c.add_argument("id")
    c = cmd("list", "list containers")
    c.add_argument("-f", "--format", default="table", choices=["table", "json"])
    c.add_argument("-q", "--quiet", action="store_true")
    c = cmd("ps", "list a container's processes")
    c.add_argument("-f", "--format", default="table", choices=["table", "json"])
    c.add_argument("id")
    c.add_argument("ps_args", nargs=argparse.REMAINDER)
    c = cmd("pause", "freeze a container's processes")
    c.add_argument("id")
    c = cmd("resume", "thaw a paused container")
    c.add_argument("id")
    c = cmd("update", "change a container's resource limits")
    c.add_argument("-r", "--resources", default="", help="LinuxResources JSON file, - for stdin")
    c.add_argument("--memory", default="")
    c.add_argument("--memory-reservation", default="")
    c.add_argument("--memory-swap", default="")
    c.add_argument("--kernel-memory", default="")
    c.add_argument("--cpu-shares", type=int)
    c.add_argument("--cpu-period", type=int)
    c.add_argument("--cpu-quota", type=int)
    c.add_argument("--cpu-rt-period", type=int)
    c.add_argument("--cpu-rt-runtime", type=int)
    c.add_argument("--cpuset-cpus", default="")
    c.add_argument("--cpuset-mems", default="")
    c.add_argument("--pids-limit", type=int)
    c.add_argument("--blkio-weight", type=int)
    c.add_argument("id")
    cmd("features", "print the runtime's features as JSON")
    c = cmd("spec", "write a default config.json")
    c.add_argument("-b", "--bundle", default=".")
    c.add_argument("--rootless", action="store_true")
    return p


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().removesuffix("b")
    if t == "-1":
        return -1
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def _cmd_create(store: Store, a: argparse.Namespace) -> int:
    from matou.runtime.create import Options, create

    create(store, Options(a.id, a.bundle, a.pid_file, a.console_socket, a.no_pivot,
                          a.preserve_fds, a.systemd_cgroup))
    return 0


def _cmd_run(store: Store, a: argparse.Namespace) -> int:
    from matou.runtime import foreground
    from matou.runtime.create import Options, create, load_bundle
    from matou.runtime.delete import delete
    from matou.runtime.start import start

    ours = theirs = None
    spec = load_bundle(os.path.realpath(a.bundle))
    terminal = spec.process is not None and spec.process.terminal
    if terminal and not a.console_socket:
        if a.detach:
            raise InvalidArgument("cannot allocate tty if matou-runtime will detach "
                                  "without setting console socket")
        ours, theirs = foreground.console_pair()
    if not a.detach:
        foreground.become_subreaper()
    rec = create(store, Options(a.id, a.bundle, a.pid_file, a.console_socket, a.no_pivot,
                                a.preserve_fds, a.systemd_cgroup, console_sock=theirs))
    master = None
    if ours is not None:
        from matou.linux.pty import recv_console

        assert theirs is not None
        theirs.close()
        master = recv_console(ours)
    try:
        start(store, a.id)
    except MatouError:
        delete(store, a.id, force=True)
        raise
    if a.detach:
        return 0
    code = foreground.wait(rec.pid, master)
    if not a.keep:
        delete(store, a.id, force=True)
    return code


def _cmd_exec(store: Store, a: argparse.Namespace) -> int:
    from matou.oci.runtime_spec import Capabilities, User, parse_process, parse_spec
    from matou.runtime import foreground
    from matou.runtime.exec import ExecOptions, exec_process

    if a.process:
        try:
            with open(a.process) as f:
                process = parse_process(json.load(f))
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"--process {a.process}: {e}") from e
    else:
        if not a.command:
            raise InvalidArgument("exec: a command is required")
        base = parse_spec(store.load(a.id).config).process
        if base is None:
            raise InvalidArgument("container has no process to derive from")
        process = base._replace(args=tuple(a.command), terminal=a.tty,
                          env=base.env + tuple(a.env), console_size=None)
        if a.cwd:
            process = process._replace(cwd=a.cwd)
        if a.user:
            uid, _, gid = a.user.partition(":")
            process = process._replace(user=User(int(uid), int(gid or 0), None,
                                                 tuple(a.additional_gids)))
        if a.cap and process.capabilities is not None:
            c = process.capabilities
            process = process._replace(capabilities=Capabilities(
                *(tuple(dict.fromkeys(getattr(c, s) + tuple(a.cap))) for s in
                  ("bounding", "effective", "inheritable", "permitted", "ambient"))))
        if a.no_new_privs:
            process = process._replace(no_new_privileges=True)
    ours = theirs = None
    if process.terminal and not a.console_socket:
        if a.detach:
            raise InvalidArgument("cannot allocate tty if matou-runtime will detach "
                                  "without setting console socket")
        ours, theirs = foreground.console_pair()
    if not a.detach:
        foreground.become_subreaper()
    pid = exec_process(store, ExecOptions(a.id, process, a.pid_file, a.console_socket,
                                          a.preserve_fds, console_sock=theirs))
    if a.detach:
        return 0
    master = None
    if ours is not None:
        from matou.linux.pty import recv_console

        assert theirs is not None
        theirs.close()
        master = recv_console(ours)
    return foreground.wait(pid, master)


def _cmd_start(store: Store, a: argparse.Namespace) -> int:
    from matou.runtime.start import start

    start(store, a.id)
    return 0


def _cmd_kill(store: Store, a: argparse.Namespace) -> int:
    from matou.runtime.kill import kill, parse_signal

    kill(store, a.id, parse_signal(a.signal), a.all)
    return 0


def _cmd_delete(store: Store, a: argparse.Namespace) -> int:
    from matou.runtime.delete import delete

    delete(store, a.id, a.force)
    return 0


def _cmd_state(store: Store, a: argparse.Namespace) -> int:
    from matou.runtime.create import dumps_state

    print(dumps_state(store.load(a.id), store))
    return 0


def _cmd_list(store: Store, a: argparse.Namespace) -> int:
    recs = [store.load(i) for i in store.ids()]
    if a.quiet:
        print("\n".join(r.id for r in recs))
        return 0
    rows = []
    for r in recs:
        status = store.status(r)
        rows.append({"ociVersion": "1.2.0", "id": r.id,
                     "pid": r.pid if status != "stopped" else 0, "status": status,
                     "bundle": r.bundle, "rootfs": r.rootfs, "created": r.created,
                     "owner": r.owner})
    if a.format == "json":
        print(json.dumps(rows))
        return 0
    cols = ("id", "pid", "status", "bundle", "created", "owner")
    table = [[c.upper() for c in cols]] + [[str(row[c]) for c in cols] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    for line in table:
        print("   ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    return 0


def _cmd_ps(store: Store, a: argparse.Namespace) -> int:
    from matou.runtime import ps

    if a.format == "json":
        print(json.dumps(ps.pids(store, a.id)))
    else:
        sys.stdout.write(ps.table(store, a.id, [x for x in a.ps_args if x != "--"]))
    return 0


def _cmd_pause(store: Store, a: argparse.Namespace) -> int:
    from matou.runtime.pause import pause

    pause(store, a.id)
    return 0


def _cmd_resume(store: Store, a: argparse.Namespace) -> int:
    from matou.runtime.pause import resume

    resume(store, a.id)
    return 0


def _cmd_update(store: Store, a: argparse.Namespace) -> int:
    from matou.runtime.update import merge, update

    res: dict[str, Any] = {}
    if a.resources:
        try:
            if a.resources == "-":
                res = json.load(sys.stdin)
            else:
                with open(a.resources) as f:
                    res = json.load(f)
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"--resources: {e}") from e
        if not isinstance(res, dict):
            raise InvalidArgument("--resources: expected a JSON object")
    flags: dict[str, Any] = {"memory": {}, "cpu": {}, "pids": {}, "blockIO": {}}
    for opt, key in (("memory", "limit"), ("memory_reservation", "reservation"),
                     ("memory_swap", "swap"), ("kernel_memory", "kernel")):
        if getattr(a, opt):
            flags["memory"][key] = _size(getattr(a, opt))
    for opt, key in (("cpu_shares", "shares"), ("cpu_period", "period"),
                     ("cpu_quota", "quota"), ("cpu_rt_period", "realtimePeriod"),
                     ("cpu_rt_runtime", "realtimeRuntime")):
        if getattr(a, opt) is not None:
            flags["cpu"][key] = getattr(a, opt)
    if a.cpuset_cpus:
        flags["cpu"]["cpus"] = a.cpuset_cpus
    if a.cpuset_mems:
        flags["cpu"]["mems"] = a.cpuset_mems
    if a.pids_limit is not None:
        flags["pids"]["limit"] = a.pids_limit
    if a.blkio_weight is not None:
        flags["blockIO"]["weight"] = a.blkio_weight
    res = merge(res, {k: v for k, v in flags.items() if v})
    update(store, a.id, res)
    return 0


def _cmd_features(store: Store, a: argparse.Namespace) -> int:
    from matou.runtime.features import features

    print(json.dumps(features(), indent=2))
    return 0


def _cmd_spec(store: Store, a: argparse.Namespace) -> int:
    from matou.oci.default_spec import default_spec

    path = os.path.join(a.bundle, "config.json")
    if os.path.exists(path):
        raise InvalidArgument(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        json.dump(default_spec(a.rootless), f, indent=2)
    return 0


_COMMANDS: dict[str, Callable[[Store, argparse.Namespace], int]] = {
    "create": _cmd_create, "run": _cmd_run, "start": _cmd_start, "exec": _cmd_exec,
    "kill": _cmd_kill, "delete": _cmd_delete, "state": _cmd_state, "list": _cmd_list,
    "ps": _cmd_ps, "pause": _cmd_pause, "resume": _cmd_resume, "update": _cmd_update,
    "features": _cmd_features, "spec": _cmd_spec,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log.configure(args.log, args.log_format, args.debug)
    if args.version:
        from matou import __version__

        print(f"matou-runtime version {__version__}\nspec: 1.2.0")
        return 0
    if not args.cmd:
        _parser().print_help()
        return 2
    try:
        return _COMMANDS[args.cmd](Store(args.root), args)
    except MatouError as e:
        log.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
