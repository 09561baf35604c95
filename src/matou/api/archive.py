"""`docker cp` endpoints: HEAD, GET and PUT /containers/{id}/archive.

HEAD and GET carry the path's stat in ``X-Docker-Container-Path-Stat`` (base64 of its
JSON); GET streams the tar from a worker thread through a pipe; PUT hands the request
body to the extracting thread as a blocking file, each read served by the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
from collections.abc import Callable
from typing import BinaryIO, cast

from aiohttp import web

from matou.api.server import Handler, engine_of, flag
from matou.engine import archive
from matou.errors import InvalidArgument

STAT_HEADER = "X-Docker-Container-Path-Stat"


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required")
    return path


def stat_header(st: archive.PathStat) -> str:
    return base64.b64encode(json.dumps(st.to_json(), separators=(",", ":")).encode()).decode()


async def head_archive(request: web.Request) -> web.StreamResponse:
    st = await archive.stat_path(engine_of(request).containers, request.match_info["id"],
                                 _path(request))
    return web.Response(status=200, headers={STAT_HEADER: stat_header(st)})


async def get_archive(request: web.Request) -> web.StreamResponse:
    svc = engine_of(request).containers
    async with archive.archive_path(svc, request.match_info["id"], _path(request)) as (
            st, produce):
        return await _stream(request, {STAT_HEADER: stat_header(st),
                                       "Content-Type": "application/x-tar"}, produce)


async def _stream(request: web.Request, headers: dict[str, str],
                  produce: Callable[[BinaryIO], None]) -> web.StreamResponse:
    """What ``produce`` writes (in a worker thread) as the response body, through a
    pipe; a failure after the headers cuts the stream short, as dockerd does. The docker
    CLI hangs up once it has the tar's end: a client gone is not an error."""
    r, w = os.pipe()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with os.fdopen(w, "wb") as out:
                produce(out)
        except BaseException as exc:
            failure.append(exc)

    worker = asyncio.create_task(asyncio.to_thread(run))
    gone = False
    try:
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        while chunk := await asyncio.to_thread(os.read, r, 1 << 20):
            try:
                await resp.write(chunk)
            except ConnectionResetError:
                gone = True
                break
    finally:
        os.close(r)  # a writer blocked on a full pipe gets EPIPE and ends
        await worker
    if gone:
        return resp
    if failure:
        raise failure[0]
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


class _Body(io.RawIOBase):
    """The request body as a blocking file for a worker thread: each read waits for
    the event loop to read the next chunk from the connection."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self._content = request.content
        self._loop = loop
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._left:
            fut = asyncio.run_coroutine_threadsafe(self._content.readany(), self._loop)
            self._left = fut.result()
            if not self._left:
                return 0
        n = min(len(b), len(self._left))
        b[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


async def put_archive(request: web.Request) -> web.StreamResponse:
    svc = engine_of(request).containers
    path = _path(request)
    no_overwrite = flag(request, "noOverwriteDirNonDir")
    copy_uid_gid = flag(request, "copyUIDGID")
    body = io.BufferedReader(_Body(request, asyncio.get_running_loop()), 1 << 20)
    await archive.extract_to_dir(svc, request.match_info["id"], path, cast(BinaryIO, body),
                                 no_overwrite_dir_non_dir=no_overwrite,
                                 copy_uid_gid=copy_uid_gid)
    return web.Response(status=200)


ROUTES: list[tuple[str, str, Handler]] = [
    ("HEAD", "/containers/{id}/archive", head_archive),
    ("GET", "/containers/{id}/archive", get_archive),
    ("PUT", "/containers/{id}/archive", put_archive),
]
