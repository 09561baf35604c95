"""`matoud`: the daemon's composition root — options, listeners, start and stop.

    /run/matou/            exec root, 0711 (the docker group must reach the socket)
      matou.sock           the Engine API: root:docker 0660
      matoud.pid
    /var/lib/matou/        data root (images, content, snapshots; see matou.images.setup)

Listeners: the unix socket always (unless -H names others); `-H tcp://HOST:PORT` adds TCP
— with --tlsverify it demands client certificates; without TLS it binds only loopback
addresses unless --insecure-tcp is given, which is logged loudly (whoever reaches the
port is root on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import grp
import ipaddress
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
from typing import Any

from aiohttp import web

from matou.shim.forkserver import IDLE_STOP, ForkServer

DEFAULT_SOCKET = "unix:///run/matou/matou.sock"
DEFAULT_CONFIG = "/etc/matou/daemon.json"
log = logging.getLogger("matoud")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="matoud", description="matou's daemon: the Docker Engine "
                                "API on a unix socket (and TCP when asked)")
    p.add_argument("-H", "--host", action="append", default=[],
                   help=f"listen on unix:///PATH or tcp://HOST:PORT (default {DEFAULT_SOCKET})")
    p.add_argument("--data-root", default=None, help="default /var/lib/matou")
    p.add_argument("--exec-root", default=None, help="default /run/matou")
    p.add_argument("-G", "--group", default=None, help="group owning the unix socket "
                   "(default docker; created if missing)")
    p.add_argument("--config-file", default=DEFAULT_CONFIG, help="daemon.json-like options")
    p.add_argument("--tls", action="store_true", help="serve TCP with TLS")
    p.add_argument("--tlsverify", action="store_true", help="TLS, and require client certs")
    p.add_argument("--tlscacert", default=None)
    p.add_argument("--tlscert", default=None)
    p.add_argument("--tlskey", default=None)
    p.add_argument("--insecure-tcp", action="store_true",
                   help="allow plain TCP beyond loopback (anyone reaching it is root)")
    p.add_argument("--snapshotter", default=None, choices=["auto", "overlayfs", "native"])
    p.add_argument("--insecure-registry", action="append", default=[])
    p.add_argument("--registry-mirror", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--live-restore", default=None, choices=["true", "false"])
    p.add_argument("-b", "--bridge", default=None,
                   help="the default bridge network's link (default matou0; none: no bridge)")
    p.add_argument("--bip", default=None, help="the default bridge's gateway address and "
                   "prefix, e.g. 172.18.0.1/16 (default: the first free Docker pool)")
    p.add_argument("--ipv6", action="store_true", help="IPv6 on the default bridge")
    p.add_argument("--fixed-cidr-v6", default=None,
                   help="the default bridge's IPv6 subnet (default: a unique local /64)")
    p.add_argument("--seccomp-profile", default=None,
                   help="the containers' default seccomp profile: a JSON file, "
                   "'unconfined', or 'builtin' (Docker's, the default)")
    p.add_argument("-D", "--debug", action="store_true")
    p.add_argument("-l", "--log-level", default=None,
                   choices=["debug", "info", "warn", "error", "fatal"])
    p.add_argument("-p", "--pidfile", default=None)
    return p


_CONFIG_KEYS = {
    "hosts": "host", "data-root": "data_root", "exec-root": "exec_root", "group": "group",
    "tls": "tls", "tlsverify": "tlsverify", "tlscacert": "tlscacert", "tlscert": "tlscert",
    "tlskey": "tlskey", "insecure-registries": "insecure_registry",
    "registry-mirrors": "registry_mirror", "labels": "label", "live-restore": "live_restore",
    "debug": "debug", "log-level": "log_level", "pidfile": "pidfile",
    "snapshotter": "snapshotter", "insecure-tcp": "insecure_tcp", "bridge": "bridge",
    "bip": "bip", "seccomp-profile": "seccomp_profile", "ipv6": "ipv6",
    "fixed-cidr-v6": "fixed_cidr_v6",
}


def load_options(argv: list[str] | None) -> argparse.Namespace:
    a = parser().parse_args(argv)
    path = a.config_file
    if os.path.exists(path):
        try:
            with open(path) as f:
                conf: dict[str, Any] = json.load(f)
        except (OSError, ValueError) as e:
            raise SystemExit(f"matoud: config file {path}: {e}") from e
        for key, value in conf.items():
            attr = _CONFIG_KEYS.get(key)
            if attr is None:
                raise SystemExit(f"matoud: config file {path}: unknown option {key!r}")
            current = getattr(a, attr)
            if isinstance(current, list):
                if current:
                    raise SystemExit(f"matoud: {key} is set both as a flag and in {path}")
                setattr(a, attr, list(value) if isinstance(value, list) else [value])
            elif current in (None, False):
                setattr(a, attr, value if not isinstance(value, bool) or attr != "live_restore"
                        else str(value).lower())
    a.host = a.host or [DEFAULT_SOCKET]
    a.data_root = a.data_root or "/var/lib/matou"
    a.exec_root = a.exec_root or "/run/matou"
    a.group = a.group or "docker"
    a.snapshotter = a.snapshotter or "auto"
    return a


def _socket_group(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "--system", name], check=True, capture_output=True)
        log.info("created group %s for the API socket", name)
        return grp.getgrnam(name).gr_gid


def _tls_context(a: argparse.Namespace) -> ssl.SSLContext | None:
    if not (a.tls or a.tlsverify):
        return None
    if not (a.tlscert and a.tlskey):
        raise SystemExit("matoud: --tlscert and --tlskey are needed for TLS")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(a.tlscert, a.tlskey)
    if a.tlsverify:
        if not a.tlscacert:
            raise SystemExit("matoud: --tlsverify needs --tlscacert")
        ctx.load_verify_locations(a.tlscacert)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _seccomp_profile(choice: str | None) -> str:
    """--seccomp-profile as the engine takes it: "", "unconfined", or the file's JSON,
    checked now so that a bad profile stops the daemon rather than every container."""
    if not choice or choice == "builtin":
        return ""
    if choice == "unconfined":
        return choice
    from matou.engine import seccomp_profile

    try:
        with open(choice) as f:
            text = f.read()
        seccomp_profile.parse(text)
    except (OSError, ValueError) as e:
        raise SystemExit(f"matoud: --seccomp-profile {choice}: {e}") from e
    return text


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _let_an_idle_fork_server_go(forks: ForkServer) -> None:
    while True:
        await asyncio.sleep(30)
        if await asyncio.to_thread(forks.stop_if_idle):
            log.debug("fork server unused for %d s: stopped", IDLE_STOP)


async def serve(a: argparse.Namespace, forks: ForkServer) -> None:
    from matou.api.server import build_app
    from matou.engine import Config, Engine

    os.makedirs(a.exec_root, 0o711, exist_ok=True)
    os.chmod(a.exec_root, 0o711)
    engine = Engine(Config(
        data_root=a.data_root, exec_root=a.exec_root, snapshotter=a.snapshotter,
        debug=a.debug, labels=tuple(a.label), insecure_registries=tuple(a.insecure_registry),
        registry_mirrors=tuple(a.registry_mirror),
        live_restore=(a.live_restore or "true") == "true", bridge=a.bridge or "matou0",
        bip=a.bip or "", seccomp_profile=_seccomp_profile(a.seccomp_profile),
        ipv6=bool(a.ipv6), fixed_cidr_v6=a.fixed_cidr_v6 or ""), forks)
    try:
        await engine.networks.setup([c for c in engine.containers.all() if c.running])
    except Exception as e:  # the API still serves; containers on the bridge cannot start
        log.error("default bridge network: %s", e)
    await engine.containers.restore()
    app = build_app(engine)
    # streams (attach, logs -f, events) must not hold a shutdown: containers live on
    runner = web.AppRunner(app, access_log=logging.getLogger("matoud.access") if a.debug
                           else None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    tls = _tls_context(a)
    gid = _socket_group(a.group)
    sockets: dict[str, int] = {}
    for host in a.host:
        if host.startswith("unix://"):
            path = host[len("unix://"):]
            os.makedirs(os.path.dirname(path), 0o711, exist_ok=True)
            if os.path.exists(path):
                os.unlink(path)
            old = os.umask(0o177)  # never world-accessible, not even for an instant
            try:
                site: web.BaseSite = web.UnixSite(runner, path)
                await site.start()
            finally:
                os.umask(old)
            os.chown(path, 0, gid)
            os.chmod(path, 0o660)
            sockets[path] = os.stat(path).st_ino
            log.info("API listening on %s (root:%s 0660)", path, a.group)
        elif host.startswith(("tcp://", "http://")):
            hostport = host.split("://", 1)[1]
            h, _, port = hostport.rpartition(":")
            h = h.strip("[]") or "127.0.0.1"
            if tls is None and not _is_loopback(h):
                if not a.insecure_tcp:
                    raise SystemExit(f"matoud: refusing plain TCP on {h}: whoever reaches it "
                                     "is root here; use --tlsverify, or --insecure-tcp")
                log.warning("!!! PLAIN TCP ON %s:%s WITHOUT TLS: ANYONE WHO CAN REACH IT "
                            "CONTROLS THIS MACHINE AS ROOT !!!", h, port)
            site = web.TCPSite(runner, h, int(port or (2376 if tls else 2375)),
                               ssl_context=tls)
            await site.start()
            log.info("API listening on %s://%s:%s%s", "https" if tls else "http", h, port,
                     " (client certificates required)" if a.tlsverify else "")
        else:
            raise SystemExit(f"matoud: unsupported -H {host!r}")
    if a.pidfile or a.exec_root:
        pidfile = a.pidfile or os.path.join(a.exec_root, "matoud.pid")
        with open(pidfile, "w") as f:
            f.write(str(os.getpid()))
    engine.events.emit("daemon", "start", engine.id, {"name": os.uname().nodename})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    idle = asyncio.create_task(_let_an_idle_fork_server_go(forks))
    await stop.wait()
    idle.cancel()
    log.info("shutting down")
    await runner.cleanup()
    try:
        await engine.networks.shutdown(any(c.running for c in engine.containers.all()))
    except Exception as e:
        log.error("removing the bridge network: %s", e)
    for path, ino in sockets.items():
        try:  # only our own: a successor may already listen on the same path
            if os.stat(path).st_ino == ino:
                os.unlink(path)
        except FileNotFoundError:
            pass


def main(argv: list[str] | None = None) -> int:
    a = load_options(argv)
    level = "debug" if a.debug else (a.log_level or "info")
    logging.basicConfig(level={"warn": "WARNING", "fatal": "CRITICAL"}.get(level,
                                                                          level.upper()),
                        format="time=%(asctime)s level=%(levelname)s msg=%(message)s",
                        stream=sys.stderr)
    logging.getLogger("asyncio").setLevel(logging.WARNING)  # its debug log is noise
    if os.geteuid() != 0:
        print("matoud: must run as root", file=sys.stderr)
        return 1
    forks = ForkServer()  # started by the first container or exec that needs it
    try:
        asyncio.run(serve(a, forks))
    except KeyboardInterrupt:
        pass
    finally:
        forks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
