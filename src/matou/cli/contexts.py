"""docker's contexts, in docker's own store: a context named in `--context`,
`DOCKER_CONTEXT` or config.json's `currentContext` says which daemon to reach. The store
is the one the docker CLI keeps, so a context made by either works in both.

    $DOCKER_CONFIG/contexts/meta/<sha256(name)>/meta.json
        {"Name": …, "Metadata": {"Description": …},
         "Endpoints": {"docker": {"Host": …, "SkipTLSVerify": false}}}
    $DOCKER_CONFIG/contexts/tls/<sha256(name)>/docker/{ca,cert,key}.pem

May import: client (and stdlib).
"""

from __future__ import annotations

import os

from matou.client import fastjson as json

TYPE_CHECKING = False  # not typing's: the CLI starts faster
if TYPE_CHECKING:
    import ssl
    from typing import Any

DEFAULT = "default"


class ContextError(Exception):
    """A context that cannot be used or made; the text is docker's."""


def config_dir() -> str:
    return os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")


def _key(name: str) -> str:
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()


def _meta_path(name: str) -> str:
    return os.path.join(config_dir(), "contexts", "meta", _key(name), "meta.json")


def _tls_dir(name: str) -> str:
    return os.path.join(config_dir(), "contexts", "tls", _key(name), "docker")


def chosen(flag: str | None, host_flag: bool, config: dict[str, Any]) -> str:
    """Which context a command uses, by docker's rules: --context (not with -H); else
    none when a host is given (-H, DOCKER_HOST, MATOU_HOST); else DOCKER_CONTEXT; else
    config.json's currentContext."""
    if flag and host_flag:
        raise ContextError("conflicting options: cannot specify both --host and --context")
    if flag:
        return flag
    if host_flag or os.environ.get("DOCKER_HOST") or os.environ.get("MATOU_HOST"):
        return DEFAULT
    return os.environ.get("DOCKER_CONTEXT") or str(config.get("currentContext") or DEFAULT)


def load(name: str) -> dict[str, Any]:
    if name == DEFAULT:
        return {"Name": DEFAULT, "Metadata": {"Description": "Current DOCKER_HOST based "
                                              "configuration"},
                "Endpoints": {"docker": {"Host": _default_host(), "SkipTLSVerify": False}}}
    try:
        with open(_meta_path(name), "rb") as f:
            meta: dict[str, Any] = json.loads(f.read())
    except FileNotFoundError:
        raise ContextError(f"context \"{name}\" does not exist") from None
    except ValueError as e:
        raise ContextError(f"context \"{name}\": {e}") from e
    return meta


def _default_host() -> str:
    from matou.client.transport import host_from_env

    return host_from_env(None)


def names() -> list[str]:
    root = os.path.join(config_dir(), "contexts", "meta")
    found = []
    for key in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        try:
            with open(os.path.join(root, key, "meta.json"), "rb") as f:
                found.append(str(json.loads(f.read())["Name"]))
        except (OSError, ValueError, KeyError):
            continue
    return sorted(found)


def endpoint(name: str) -> tuple[str, ssl.SSLContext | None]:
    """The daemon address of a context, and the TLS it asks for."""
    docker = (load(name).get("Endpoints") or {}).get("docker") or {}
    host = str(docker.get("Host") or "")
    if not host:
        raise ContextError(f"context \"{name}\" has no docker endpoint")
    tls = _tls_dir(name)
    files = {f: os.path.join(tls, f"{f}.pem") for f in ("ca", "cert", "key")}
    if not host.startswith(("tcp://", "https://")) or not any(
            os.path.exists(p) for p in files.values()):
        return host, None
    import ssl

    skip = bool(docker.get("SkipTLSVerify"))
    ctx = ssl.create_default_context(
        cafile=files["ca"] if os.path.exists(files["ca"]) and not skip else None)
    if skip:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if os.path.exists(files["cert"]) and os.path.exists(files["key"]):
        ctx.load_cert_chain(files["cert"], files["key"])
    return host, ctx


def create(name: str, description: str, docker: dict[str, str]) -> None:
    """A new context; ``docker`` holds docker's --docker fields (host, ca, cert, key,
    skip-tls-verify)."""
    import shutil

    if name == DEFAULT or not name or not all(c.isalnum() or c in "_.+-" for c in name) \
            or not name[0].isalnum():
        raise ContextError(f"context name \"{name}\" is invalid, names are validated against "
                           "regexp \"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$\"" if name != DEFAULT
                           else "\"default\" is a reserved context name")
    if os.path.exists(_meta_path(name)):
        raise ContextError(f"context \"{name}\" already exists")
    unknown = set(docker) - {"host", "ca", "cert", "key", "skip-tls-verify", "from"}
    if unknown:
        raise ContextError(f"unrecognized config key: {sorted(unknown)[0]}")
    host = docker.get("host") or _default_host()
    meta = {"Name": name, "Metadata": {"Description": description} if description else {},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify":
                                     docker.get("skip-tls-verify", "") in ("1", "true")}}}
    os.makedirs(os.path.dirname(_meta_path(name)), 0o755, exist_ok=True)
    for field in ("ca", "cert", "key"):
        if docker.get(field):
            os.makedirs(_tls_dir(name), 0o700, exist_ok=True)
            shutil.copyfile(docker[field], os.path.join(_tls_dir(name), f"{field}.pem"))
    tmp = _meta_path(name) + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(meta, compact=True))
    os.replace(tmp, _meta_path(name))


def remove(name: str) -> None:
    import shutil

    if name == DEFAULT:
        raise ContextError("default: context \"default\" cannot be removed")
    if not os.path.exists(_meta_path(name)):
        raise ContextError(f"context \"{name}\" does not exist")
    shutil.rmtree(os.path.dirname(_meta_path(name)))
    shutil.rmtree(os.path.dirname(_tls_dir(name)), ignore_errors=True)
