"""`matou-registry`: an OCI distribution registry server.

    matou-registry serve [--addr 127.0.0.1:5000] [--root /var/lib/matou-registry]
                         [--config FILE] [--htpasswd FILE [--auth token|basic] [--realm URL]]
    matou-registry gc [--root …] [--dry-run]

The config file is JSON with the same keys as the flags ("addr", "root", "htpasswd",
"auth", "realm"). Without authentication the registry serves only loopback unless
--insecure-public is given, and then says so loudly.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="matou-registry", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--addr", default=None)
    s.add_argument("--root", default=None)
    s.add_argument("--config", default=None)
    s.add_argument("--insecure-public", action="store_true")
    s.add_argument("--htpasswd", default=None, help="users (bcrypt htpasswd); enables auth")
    s.add_argument("--auth", choices=["token", "basic"], default=None,
                   help="token (Docker's Bearer flow, default) or basic")
    s.add_argument("--realm", default=None, help="the token endpoint clients are sent to "
                   "(default http://ADDR/token)")
    g = sub.add_parser("gc")
    g.add_argument("--root", default="/var/lib/matou-registry")
    g.add_argument("--dry-run", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="time=%(asctime)s level=%(levelname)s "
                        "msg=%(message)s", stream=sys.stderr)
    from matou.registry.storage import Filesystem
    from matou.registry.store import Store

    if a.cmd == "gc":
        for blob in Store(Filesystem(a.root)).gc(a.dry_run):
            print(("would remove " if a.dry_run else "removed ") + blob)
        return 0
    conf: dict[str, str] = {}
    if a.config:
        with open(a.config) as f:
            conf = json.load(f)
    addr = a.addr or conf.get("addr") or "127.0.0.1:5000"
    root = a.root or conf.get("root") or "/var/lib/matou-registry"
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    htpasswd = a.htpasswd or conf.get("htpasswd") or ""
    mode = a.auth or conf.get("auth") or "token"
    realm = a.realm or conf.get("realm") or f"http://{addr}/token"
    if not loopback and not htpasswd:
        if not a.insecure_public:
            print(f"matou-registry: refusing to serve {host} without authentication; "
                  "use 127.0.0.1, or --insecure-public", file=sys.stderr)
            return 1
        logging.warning("!!! SERVING %s WITHOUT AUTHENTICATION: ANYONE WHO REACHES IT CAN "
                        "PUSH AND DELETE !!!", addr)
    from aiohttp import web

    from matou.registry.server import build_app

    os.makedirs(root, 0o700, exist_ok=True)
    app = build_app(Store(Filesystem(root)), htpasswd, mode, realm)
    logging.info("matou-registry serving %s on http://%s:%s", root, host, port)
    web.run_app(app, host=host, port=int(port), print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
