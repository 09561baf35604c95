"""The Engine API's HTTP edge: routing (with and without a /vX.Y prefix), API version
negotiation, and the one place where matou's error kinds become HTTP statuses.

    MatouError kind      status   (as dockerd answers)
    InvalidArgument      400
    NotFound             404
    AlreadyExists        409
    FailedPrecondition   409
    Unsupported          501
    SystemError_, other  500

Every error body is Docker's ``{"message": "…"}``; a malformed request never kills the
daemon, it only gets its 4xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

from aiohttp import web

from matou.engine import Engine
from matou.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    MatouError,
    NotFound,
    Unsupported,
)

MIN_API = (1, 24)
MAX_API = (1, 50)
MAX_JSON_BODY = 8 << 20        # a JSON request body larger than this is refused
log = logging.getLogger("matoud.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)

_STATUS: list[tuple[type[MatouError], int]] = [
    (InvalidArgument, 400), (NotFound, 404), (AlreadyExists, 409),
    (FailedPrecondition, 409), (Unsupported, 501),
]


def json_response(data: Any, status: int = 200) -> web.Response:
    """JSON as dockerd sends it: the docker CLI only parses an error body whose
    Content-Type is exactly ``application/json`` (no charset parameter)."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        content_type="application/json")


def error(status: int, message: str) -> web.Response:
    return json_response({"message": message}, status=status)


def version_text(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def _parse_version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        raise InvalidArgument(f"invalid API version {text!r}") from None


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    raw = request.match_info.get("version")
    version = MAX_API
    if raw is not None:
        try:
            version = _parse_version(raw)
        except InvalidArgument as e:
            return error(400, str(e))
        if version < MIN_API:
            return error(400, f"client version {raw} is too old. Minimum supported API "
                              f"version is {version_text(MIN_API)}, please upgrade your "
                              "client to a newer version")
        if version > MAX_API:
            return error(400, f"client version {raw} is too new. Maximum supported API "
                              f"version is {version_text(MAX_API)}")
    request["api_version"] = version
    try:
        response = await handler(request)
    except web.HTTPException as e:
        if e.status == 404 and not request.match_info.route.resource:
            return error(404, "page not found")
        if e.status >= 400 and e.content_type != "application/json":
            return error(e.status, e.reason if e.status != 413 else
                         "request body is too large")
        raise
    except MatouError as e:
        status = next((s for kind, s in _STATUS if isinstance(e, kind)), 500)
        if status == 500:
            log.error("%s %s: %s", request.method, request.path, e)
        return error(status, str(e))
    except (ConnectionResetError, BrokenPipeError):
        raise
    except Exception as e:
        log.exception("%s %s", request.method, request.path)
        return error(500, f"internal error: {type(e).__name__}: {e}")
    response.headers.setdefault("Api-Version", version_text(MAX_API))
    response.headers.setdefault("Server", "matou")
    return response


async def json_body(request: web.Request, *, required: bool = True) -> Any:
    """The request's JSON body, with Docker's answers to empty or malformed input."""
    if request.content_length is not None and request.content_length > MAX_JSON_BODY:
        raise InvalidArgument("request body is too large")
    raw = await request.content.read(MAX_JSON_BODY + 1)
    if len(raw) > MAX_JSON_BODY:
        raise InvalidArgument("request body is too large")
    if not raw.strip():
        if required:
            raise InvalidArgument("bad parameter: request body is empty")
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid JSON: {e}") from e


async def stream_tar(request: web.Request,
                     produce: Callable[[BinaryIO], None]) -> web.StreamResponse:
    """Send, as an application/x-tar response, what ``produce`` writes into the file it
    is given — from a worker thread, through a pipe, so that neither side holds the whole
    archive. A failure after the first byte cuts the stream short, as dockerd does."""
    r, w = os.pipe()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with os.fdopen(w, "wb") as out:
                produce(out)
        except BaseException as exc:
            failure.append(exc)

    worker = asyncio.create_task(asyncio.to_thread(run))
    resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await resp.prepare(request)
    try:
        while chunk := await asyncio.to_thread(os.read, r, 1 << 20):
            await resp.write(chunk)
    finally:
        os.close(r)
        await worker
    if failure:
        raise failure[0]
    await resp.write_eof()
    return resp


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    v = request.query.get(name)
    if v is None:
        return default
    if v.lower() in ("1", "true", "yes"):
        return True
    if v.lower() in ("", "0", "false", "no"):
        return False
    raise InvalidArgument(f"invalid boolean value for {name}: {v!r}")


def timestamp(text: str | None, now: float) -> float | None:
    """A since/until parameter: unix seconds (with a fraction, as clients send it), and
    leniently RFC 3339 or a duration ago (10m); anything else is the client's error."""
    from matou.oci import timestamps

    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return now - float(text[:-1]) * units[text[-1]]
    seconds = timestamps.parse(text)
    if seconds is None:
        raise InvalidArgument(f"invalid timestamp {text!r}: unix seconds, RFC 3339 or a "
                              "duration (10m) are understood")
    return float(seconds)


def filters(request: web.Request) -> dict[str, list[str]]:
    """Docker's `filters` query parameter: {"key": ["v"]} or the legacy {"key": {"v": true}}."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"invalid filters: {e}") from e
    if not isinstance(data, dict):
        raise InvalidArgument("invalid filters: expected an object")
    out: dict[str, list[str]] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out[k] = [str(x) for x, on in v.items() if on]
        elif isinstance(v, list):
            out[k] = [str(x) for x in v]
        else:
            raise InvalidArgument(f"invalid filters: {k}")
    return out


def build_app(engine: Engine) -> web.Application:
    from matou.api import archive, containers, images, networks, system, volumes

    app = web.Application(middlewares=[_middleware], client_max_size=MAX_JSON_BODY)
    app[ENGINE] = engine
    routes: list[tuple[str, str, Handler]] = [*system.ROUTES, *images.ROUTES,
                                              *containers.ROUTES, *volumes.ROUTES,
                                              *archive.ROUTES, *networks.ROUTES]
    for method, path, handler in routes:
        for prefix in ("", "/v{version:[0-9]+(?:\\.[0-9]+)?}"):
            app.router.add_route(method, prefix + path, handler)
    return app


def engine_of(request: web.Request) -> Engine:
    return request.app[ENGINE]
