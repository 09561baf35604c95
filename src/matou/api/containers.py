"""Container endpoints, in Docker's JSON shapes; attach hijacks the HTTP connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from matou.api.server import (
    engine_of,
    filters,
    flag,
    json_body,
    json_response,
    stream_tar,
    timestamp,
)
from matou.engine import Engine
from matou.engine import containers as ctrs
from matou.engine import spec as specs
from matou.engine.containers import Container, _ts
from matou.engine.networks import empty_settings
from matou.errors import (
    FailedPrecondition,
    InvalidArgument,
    MatouError,
    NotFound,
    Unsupported,
)
from matou.oci import timestamps

log = logging.getLogger("matoud.api")


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    v = request.query.get(name)
    if v in (None, ""):
        return default
    try:
        return int(v)
    except ValueError:
        raise InvalidArgument(f"invalid value for {name}: {v!r}") from None


async def create(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidArgument("container config must be a JSON object")
    host = body.pop("HostConfig", None) or {}
    networking = body.pop("NetworkingConfig", None)
    if networking is not None and not isinstance(networking, dict):
        raise InvalidArgument("NetworkingConfig must be an object")
    if not isinstance(host, dict):
        raise InvalidArgument("HostConfig must be an object")
    for key, kind in (("Cmd", list), ("Entrypoint", list), ("Env", list), ("Labels", dict)):
        if body.get(key) is not None and not isinstance(body[key], kind):
            if key in ("Cmd", "Entrypoint") and isinstance(body[key], str):
                body[key] = [body[key]]
                continue
            raise InvalidArgument(f"json: cannot unmarshal {type(body[key]).__name__} into "
                                  f"Go struct field Config.{key}")
    c = await e.containers.create(request.query.get("name"), body, host, networking,
                                  request.query.get("platform", ""))
    return json_response({"Id": c.id, "Warnings": specs.warnings(host)}, status=201)


async def start(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    c = e.containers.get(request.match_info["id"])
    if c.running:
        return web.Response(status=304)
    await e.containers.start(c.id)
    return web.Response(status=204)


async def wait(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    cond = request.query.get("condition") or "not-running"
    if cond not in ("not-running", "next-exit", "removed"):
        raise InvalidArgument(f"invalid condition: {cond!r}")
    e.containers.get(request.match_info["id"])
    # headers first, as dockerd does: the CLI waits for them before it starts the container
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    result = await e.containers.wait(request.match_info["id"], cond)
    with contextlib.suppress(ConnectionError):  # the client may be gone by now
        await resp.write(json.dumps(result).encode() + b"\n")
        await resp.write_eof()
    return resp


async def kill(request: web.Request) -> web.StreamResponse:
    from matou.runtime.kill import parse_signal

    e = engine_of(request)
    sig = parse_signal(request.query.get("signal") or "SIGKILL")
    c = e.containers.get(request.match_info["id"])
    await e.containers.kill(c.id, sig)
    if sig == 9:  # as dockerd: a SIGKILL answers once the container is down
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(c.exited.wait(), 10)
    return web.Response(status=204)


async def stop(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    timeout = _int(request, "t", None)
    stopped = await e.containers.stop(request.match_info["id"], timeout)
    return web.Response(status=204 if stopped else 304)


async def restart(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    await e.containers.stop(request.match_info["id"], _int(request, "t", None))
    await e.containers.start(request.match_info["id"])
    return web.Response(status=204)


async def remove_link(request: web.Request) -> web.StreamResponse:
    """DELETE /containers/NAME/ALIAS?link=1: forget a legacy link of NAME."""
    e = engine_of(request)
    if not flag(request, "link"):
        raise NotFound(f"No such container: {request.match_info['id']}/"
                       f"{request.match_info['link']}")
    c = e.containers.get(request.match_info["id"])
    alias = request.match_info["link"]
    links = c.r["HostConfig"].get("Links") or []
    kept = [x for x in links if str(x).partition(":")[2].rsplit("/", 1)[-1] != alias]
    if len(kept) == len(links):
        raise NotFound(f"Could not find entity for {alias}")
    c.r["HostConfig"]["Links"] = kept or None
    e.containers._save(c)
    return web.Response(status=204)


async def remove(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    await e.containers.remove(request.match_info["id"], flag(request, "force"),
                              flag(request, "v"))
    return web.Response(status=204)


def _summary(e: Engine, c: Container) -> dict[str, Any]:
    r = c.r
    status = r["State"]["Status"]
    now = time.time()
    up = timestamps.human_duration(now - _ts(r["State"]["StartedAt"]))
    ago = timestamps.human_duration(now - _ts(r["State"]["FinishedAt"]))
    if r["State"].get("Restarting"):
        text = f"Restarting ({r['State']['ExitCode']}) {ago} ago"
    else:
        text = {"running": f"Up {up}", "paused": f"Up {up} (Paused)", "created": "Created",
                "removing": "Removal In Progress", "dead": "Dead"}.get(
            status, f"Exited ({r['State']['ExitCode']}) {ago} ago")
    health = (r["State"].get("Health") or {}).get("Status")
    if status == "running" and health:
        text += f" (health: {health})" if health == "starting" else f" ({health})"
    return {"Id": c.id, "Names": [r["Name"]], "Image": r["ImageName"], "ImageID": r["Image"],
            "Command": " ".join([r["Path"], *r["Args"]]), "Created": int(_ts(r["Created"])),
            "Ports": e.networks.summary_ports(c), "Labels": r["Config"].get("Labels") or {},
            "State": status,
            "Status": text, "HostConfig": {"NetworkMode": r["HostConfig"].get("NetworkMode")},
            "NetworkSettings": {"Networks": (r.get("NetworkSettings") or {}).get("Networks")
                                or {}},
            "Mounts": [{k: m.get(k) for k in ("Type", "Name", "Source", "Destination",
                                              "Driver", "Mode", "RW", "Propagation")}
                       for m in r.get("Mounts") or []]}


async def list_(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    f = filters(request)
    show_all = flag(request, "all")
    out = []
    for c in e.containers.all():
        if not show_all and not c.running and "status" not in f:
            continue
        if "status" in f and c.state["Status"] not in f["status"]:
            continue
        if "name" in f and not any(n in c.name for n in f["name"]):
            continue
        if "id" in f and not any(c.id.startswith(i) for i in f["id"]):
            continue
        if "label" in f:
            labels = c.r["Config"].get("Labels") or {}
            if not all((w.partition("=")[0] in labels) and (not w.partition("=")[1] or
                       labels[w.partition("=")[0]] == w.partition("=")[2]) for w in f["label"]):
                continue
        out.append(_summary(e, c))
    limit = _int(request, "limit", -1)
    if limit and limit > 0:
        out = out[:limit]
    if flag(request, "size"):  # `docker ps -s`: the writable layer, and with the image
        for item in out:
            c = e.containers.get(item["Id"])
            item["SizeRw"], item["SizeRootFs"] = await asyncio.to_thread(
                ctrs.sizes, e.containers, c)
    return json_response(out)


async def inspect(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    c = e.containers.get(request.match_info["id"])
    r = dict(c.r)
    r.pop("ImageName", None)
    r["Config"] = {**r["Config"], "Image": c.r["ImageName"]}
    r["Mounts"] = [{k: v for k, v in m.items()} for m in c.r.get("Mounts") or []]
    r.pop("MatouNet", None)
    r.pop("MatouMacs", None)
    r.setdefault("NetworkSettings", empty_settings())
    return json_response(r)


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def detach_keys(text: str | None) -> bytes:
    """Docker's detach key spec ("ctrl-p,ctrl-q", "a,ctrl-@") as the bytes to watch for."""
    if not text:
        text = "ctrl-p,ctrl-q"
    out = bytearray()
    for key in text.split(","):
        key = key.strip()
        if len(key) == 1:
            out.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6 and \
                (key[5].isalpha() or key[5] in "@[\\]^_"):
            out.append(ord(key[5].upper()) & 0x1F)
        else:
            raise InvalidArgument(f"Invalid detach keys ({text}) provided")
    return bytes(out)


def scan_detach(buf: bytes, keys: bytes) -> tuple[bytes, bytes, bool]:
    """Split client input at the detach sequence: (bytes to pass on, bytes held back as a
    possible start of the sequence, whether the sequence was typed)."""
    i = buf.find(keys)
    if i >= 0:
        return buf[:i], b"", True
    for n in range(min(len(keys) - 1, len(buf)), 0, -1):
        if buf.endswith(keys[:n]):
            return buf[:-n], buf[-n:], False
    return buf, b"", False


async def _hijack(request: web.Request, tty: bool, want_stdin: bool, stdin_once: bool,
                  connect: Callable[[], Awaitable[Conn | bytes | None]],
                  preface: bytes = b"", detach: bytes = b"",
                  reframe: Callable[[bytes], bytes] | None = None) -> web.StreamResponse:
    """Turn the connection into a raw stream between the client and a shim stream.

    aiohttp stops reading the connection and we work on our own duplicate of its socket,
    which outlives whatever aiohttp does with its transport once the request looks
    complete (Content-Length: 0)."""
    transport = request.transport
    assert transport is not None
    transport.pause_reading()
    raw = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
    raw.setblocking(False)
    loop = asyncio.get_running_loop()
    upgrade = "upgrade" in request.headers.get("Connection", "").lower()
    kind = "application/vnd.docker.raw-stream" if tty else \
        "application/vnd.docker.multiplexed-stream"
    head = (f"HTTP/1.1 {'101 UPGRADED' if upgrade else '200 OK'}\r\nContent-Type: {kind}\r\n"
            + ("Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else "") + "\r\n")
    try:
        # answer at once: for attach, the client starts the container only after this
        await loop.sock_sendall(raw, head.encode())
        if preface:
            # clients that read the stream from the raw socket (docker-py) lose whatever
            # arrives with the response head into their HTTP parser's buffer: let them
            # take the head first, as dockerd's slower path gives them time to
            await asyncio.sleep(0.05)
            await loop.sock_sendall(raw, preface)
        try:
            conn = await connect()
        except FailedPrecondition:
            conn = None  # the start failed; the client learns it from the start call
        if isinstance(conn, bytes):  # not a stream after all: a last word
            await loop.sock_sendall(raw, conn)
        elif conn is not None:
            reader, writer = conn

            async def pump_in() -> None:
                held = b""
                while data := await loop.sock_recv(raw, 65536):
                    data, held, detached = scan_detach(held + data, detach) if detach \
                        else (data, b"", False)
                    if data:
                        writer.write(data)
                        await writer.drain()
                    if detached:  # the client leaves; the container runs on
                        with contextlib.suppress(OSError):
                            raw.shutdown(socket.SHUT_RDWR)
                        writer.close()
                        return
                if stdin_once:
                    with contextlib.suppress(OSError):
                        writer.write_eof()

            feeder = asyncio.create_task(pump_in()) if want_stdin else None
            try:
                while data := await reader.read(65536):
                    await loop.sock_sendall(raw, reframe(data) if reframe else data)
            except OSError:
                pass
            finally:
                if feeder is not None:
                    feeder.cancel()
                writer.close()
    finally:
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)
        raw.close()
        transport.close()
    return web.Response()


async def attach(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    cid = request.match_info["id"]
    c = e.containers.get(cid)
    want_stdin = flag(request, "stdin")
    stdout, stderr = flag(request, "stdout"), flag(request, "stderr")
    tty = bool(c.r["Config"].get("Tty"))
    keys = detach_keys(request.query.get("detachKeys"))
    preface = b""
    if flag(request, "logs"):  # what was written so far, before the live stream
        async for entry in e.containers.logs(c.id, False, stdout, stderr, None, 0, None):
            preface += entry.data if tty else struct.pack(
                ">BxxxI", 1 if entry.stream == "stdout" else 2, len(entry.data)) + entry.data

    async def connect() -> Conn | None:
        if not flag(request, "stream", default=True):
            return None
        return await e.containers.attach(cid, want_stdin, stdout, stderr)

    return await _hijack(request, tty, want_stdin, bool(c.r["Config"].get("StdinOnce")),
                         connect, preface, keys)


async def exec_create(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidArgument("exec config must be a JSON object")
    exec_id = e.execs.create(request.match_info["id"], go_fields(body, _EXEC_FIELDS))
    return json_response({"Id": exec_id}, status=201)


_EXEC_FIELDS = ("AttachStdin", "AttachStdout", "AttachStderr", "DetachKeys", "Tty", "Env",
                "Cmd", "Privileged", "User", "WorkingDir", "ConsoleSize", "Detach")


def go_fields(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Go's JSON decoding matches field names case-insensitively, and clients rely on it
    (docker-py sends exec's `detachKeys`): the known fields under their canonical names."""
    canon = {f.lower(): f for f in fields}
    return {canon.get(k.lower(), k): v for k, v in body.items()}


async def exec_start(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    exec_id = request.match_info["id"]
    body = go_fields(await json_body(request, required=False) or {}, _EXEC_FIELDS)
    ex = e.execs.get(exec_id)
    if body.get("Detach"):
        await e.execs.start(exec_id, detach=True)
        return web.Response(status=200)
    config = ex["Config"]
    # the process has a terminal if the exec was created with one; the stream is framed
    # as the start request says (dockerd does the same)
    process_tty = bool(config.get("Tty"))
    tty = bool(body["Tty"]) if isinstance(body.get("Tty"), bool) else process_tty
    reframe = None if tty == process_tty else (
        _frame_stdout if process_tty else _Unframe())
    if ex["Running"] or ex["ExitCode"] is not None:
        raise FailedPrecondition(f"exec {exec_id[:12]} has already run")

    async def connect() -> Conn | bytes | None:
        # the process starts only once the client holds the upgraded stream, as on
        # dockerd: clients (docker-py) read the stream from the raw socket, so output
        # arriving with the response head would sit unseen in their HTTP buffer
        try:
            return await e.execs.start(exec_id, detach=False)
        except MatouError as err:
            # as dockerd: the stream carries the error and the exec's exit code is 126
            ex.update({"Running": False, "ExitCode": 126})
            text = f"OCI runtime exec failed: {err}\n".encode()
            return text if tty else struct.pack(">BxxxI", 2, len(text)) + text

    return await _hijack(request, tty, bool(config.get("AttachStdin")), True, connect,
                         detach=detach_keys(config.get("DetachKeys")), reframe=reframe)


def _frame_stdout(data: bytes) -> bytes:
    return struct.pack(">BxxxI", 1, len(data)) + data


class _Unframe:
    """Multiplexed frames (possibly split across reads) → their payloads, concatenated."""

    def __init__(self) -> None:
        self.buf = b""

    def __call__(self, data: bytes) -> bytes:
        self.buf += data
        out = b""
        while len(self.buf) >= 8:
            size = struct.unpack(">I", self.buf[4:8])[0]
            if len(self.buf) < 8 + size:
                break
            out += self.buf[8:8 + size]
            self.buf = self.buf[8 + size:]
        return out


async def exec_inspect(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    ex = await e.execs.refresh(request.match_info["id"])
    cfg = ex["Config"]
    return json_response({
        "ID": ex["ID"], "ContainerID": ex["ContainerID"], "Running": ex["Running"],
        "ExitCode": ex["ExitCode"], "Pid": ex["Pid"], "CanRemove": False,
        "DetachKeys": cfg.get("DetachKeys") or "", "OpenStdin": bool(cfg.get("AttachStdin")),
        "OpenStdout": bool(cfg.get("AttachStdout")), "OpenStderr": bool(cfg.get("AttachStderr")),
        "ProcessConfig": {"tty": bool(cfg.get("Tty")), "entrypoint": cfg["Cmd"][0],
                          "arguments": cfg["Cmd"][1:], "privileged": bool(cfg.get("Privileged")),
                          "user": cfg.get("User") or ""}})


async def exec_resize(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    await e.execs.resize(request.match_info["id"], _int(request, "h", 24) or 24,
                         _int(request, "w", 80) or 80)
    return web.Response(status=201)


async def resize(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    await e.containers.resize(request.match_info["id"], _int(request, "h", 24) or 24,
                              _int(request, "w", 80) or 80)
    return web.Response(status=200)


async def logs(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    c = e.containers.get(request.match_info["id"])
    stdout, stderr = flag(request, "stdout"), flag(request, "stderr")
    if not (stdout or stderr):
        raise InvalidArgument("you must choose at least one stream")
    tail_text = request.query.get("tail", "all")
    tail = None if tail_text in ("", "all") else int(tail_text)
    now = time.time()
    since = timestamp(request.query.get("since"), now) or 0.0
    until = timestamp(request.query.get("until"), now)
    if (c.r["HostConfig"].get("LogConfig") or {}).get("Type") == "none":
        raise Unsupported("configured logging driver does not support reading")
    tty = bool(c.r["Config"].get("Tty"))
    stamps = flag(request, "timestamps")
    resp = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream"
                                       if tty else "application/vnd.docker.multiplexed-stream"})
    await resp.prepare(request)
    with contextlib.suppress(ConnectionError):  # `logs -f` ends when the client leaves
        async for entry in e.containers.logs(c.id, flag(request, "follow"), stdout, stderr,
                                             tail, since, until):
            data = (entry.time.encode() + b" " + entry.data) if stamps else entry.data
            if not tty:
                data = struct.pack(">BxxxI", 1 if entry.stream == "stdout" else 2,
                                   len(data)) + data
            await resp.write(data)
        await resp.write_eof()
    return resp


async def prune(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    f = filters(request)
    deleted = []
    reclaimed = 0
    for c in e.containers.all():
        if c.running or c.state.get("Restarting"):
            continue
        labels = c.r["Config"].get("Labels") or {}
        if "label" in f and not all(_label_match(labels, w) for w in f["label"]):
            continue
        if "label!" in f and any(_label_match(labels, w) for w in f["label!"]):
            continue
        if "until" in f and _ts(c.r["Created"]) > _until(f["until"][0]):
            continue
        reclaimed += await asyncio.to_thread(ctrs.rw_size, e.containers, c)
        await e.containers.remove(c.id)
        deleted.append(c.id)
    return json_response({"ContainersDeleted": deleted or None,
                          "SpaceReclaimed": reclaimed})


def _label_match(labels: dict[str, str], want: str) -> bool:
    k, eq, v = want.partition("=")
    return k in labels and (not eq or labels[k] == v)


def _until(text: str) -> float:
    """A prune `until`: a Unix time, an RFC 3339 time, or a duration ago (10m, 2h)."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        ts = _ts(text)
        if not ts:
            raise InvalidArgument(f"invalid until filter: {text}") from None
        return ts


async def pause(request: web.Request) -> web.StreamResponse:
    await ctrs.pause(engine_of(request).containers, request.match_info["id"], True)
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.StreamResponse:
    await ctrs.pause(engine_of(request).containers, request.match_info["id"], False)
    return web.Response(status=204)


async def top(request: web.Request) -> web.StreamResponse:
    return json_response(await ctrs.top(engine_of(request).containers, request.match_info["id"],
                                        request.query.get("ps_args", "")))


async def rename(request: web.Request) -> web.StreamResponse:
    new = request.query.get("name")
    if not new:
        raise InvalidArgument("a new name is required")
    await ctrs.rename(engine_of(request).containers, request.match_info["id"], new)
    return web.Response(status=204)


async def changes(request: web.Request) -> web.StreamResponse:
    out = await asyncio.to_thread(ctrs.changes, engine_of(request).containers,
                                  request.match_info["id"])
    return json_response(out or None)


async def export(request: web.Request) -> web.StreamResponse:
    from matou.images.create import export_snapshot

    e = engine_of(request)
    c = e.containers.get(request.match_info["id"])
    store = e.images.store
    resp = await stream_tar(request,
                            lambda out: export_snapshot(store, f"container-{c.id}", out))
    e.events.emit("container", "export", c.id, {"name": c.name})
    return resp


async def commit(request: web.Request) -> web.StreamResponse:
    from matou.images.create import commit_snapshot

    e = engine_of(request)
    q = request.query
    c = e.containers.get(q.get("container", ""))
    body = await json_body(request, required=False)
    store = e.images.store
    base = await asyncio.to_thread(store.get, c.r["Image"])
    repo = q.get("repo", "")
    tags = [f"{repo}:{q.get('tag') or 'latest'}"] if repo else []
    keys = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts",
            "Volumes", "StopSignal", "OnBuild")
    config = body if isinstance(body, dict) and body else {
        k: c.r["Config"][k] for k in keys if c.r["Config"].get(k) is not None}
    img = await asyncio.to_thread(
        commit_snapshot, store, base, f"container-{c.id}", q.getall("changes", []), tags,
        q.get("author", ""), q.get("comment", ""), c.id, config)
    e.events.emit("container", "commit", c.id, {"name": c.name, "imageID": str(img.id)})
    return json_response({"Id": str(img.id)}, status=201)


async def stats(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    c = e.containers.get(request.match_info["id"])
    stream = flag(request, "stream", True) and not flag(request, "one-shot")
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    if not c.running:  # as dockerd: one zeroed object for a stopped container
        await resp.write(json.dumps({"read": "0001-01-01T00:00:00Z", "name": "/" + c.name,
                                     "id": c.id, "pids_stats": {}, "cpu_stats": {},
                                     "precpu_stats": {}, "memory_stats": {},
                                     "blkio_stats": {}, "networks": {}}).encode() + b"\n")
    else:
        with contextlib.suppress(ConnectionError):
            async for sample in ctrs.stats(e.containers, c.id,
                                           0.5 if not stream else 1.0):
                await resp.write(json.dumps(sample).encode() + b"\n")
                if not stream:
                    break
    with contextlib.suppress(ConnectionError):
        await resp.write_eof()
    return resp


async def update(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidArgument("update config must be a JSON object")
    warnings = await ctrs.update(engine_of(request).containers, request.match_info["id"], body)
    return json_response({"Warnings": warnings})


ROUTES = [
    ("POST", "/containers/create", create),
    ("GET", "/containers/json", list_),
    ("POST", "/containers/prune", prune),
    ("GET", "/containers/{id}/json", inspect),
    ("POST", "/containers/{id}/start", start),
    ("POST", "/containers/{id}/wait", wait),
    ("POST", "/containers/{id}/kill", kill),
    ("POST", "/containers/{id}/stop", stop),
    ("POST", "/containers/{id}/restart", restart),
    ("POST", "/containers/{id}/attach", attach),
    ("POST", "/containers/{id}/resize", resize),
    ("GET", "/containers/{id}/logs", logs),
    ("DELETE", "/containers/{id}", remove),
    ("DELETE", "/containers/{id}/{link}", remove_link),
    ("POST", "/containers/{id}/exec", exec_create),
    ("POST", "/exec/{id}/start", exec_start),
    ("GET", "/exec/{id}/json", exec_inspect),
    ("POST", "/exec/{id}/resize", exec_resize),
    ("POST", "/containers/{id}/pause", pause),
    ("POST", "/containers/{id}/unpause", unpause),
    ("GET", "/containers/{id}/top", top),
    ("POST", "/containers/{id}/rename", rename),
    ("GET", "/containers/{id}/changes", changes),
    ("GET", "/containers/{id}/export", export),
    ("POST", "/commit", commit),
    ("GET", "/containers/{id}/stats", stats),
    ("POST", "/containers/{id}/update", update),
]
