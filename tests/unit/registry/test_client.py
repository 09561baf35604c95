"""The registry client's Bearer flow: a token asked for and presented, and a blob
redirected to storage elsewhere fetched without it (the token is not leaked)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestServer

from matou.registry.client import Registry


async def test_redirected_blob_gets_no_token() -> None:
    seen: dict[str, str | None] = {}

    async def storage(request: web.Request) -> web.StreamResponse:
        seen["storage"] = request.headers.get("Authorization")
        return web.Response(body=b"blob bytes")

    store = TestServer(web.Application())
    store.app.router.add_get("/bucket/blob", storage)
    await store.start_server()

    async def token(request: web.Request) -> web.StreamResponse:
        seen["scope"] = request.query.get("scope")
        return web.json_response({"token": "T0KEN"})

    async def blob(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        if auth != "Bearer T0KEN":
            realm = f"http://127.0.0.1:{request.url.port}/token"
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": (
                f'Bearer realm="{realm}",service="test",scope="repository:a/b:pull"')})
        seen["registry"] = auth
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{store.port}/bucket/blob")

    app = web.Application()
    app.router.add_get("/token", token)
    app.router.add_get("/v2/a/b/blobs/{digest}", blob)
    reg_server = TestServer(app)
    await reg_server.start_server()
    reg = Registry(f"127.0.0.1:{reg_server.port}", plain_http=True)
    try:
        data = b"".join([c async for c in reg.blob("a/b", "sha256:" + "0" * 64)])
    finally:
        await reg.close()
        await reg_server.close()
        await store.close()
    assert data == b"blob bytes"
    assert seen == {"scope": "repository:a/b:pull", "registry": "Bearer T0KEN",
                    "storage": None}


async def test_a_chunked_upload_cut_off_goes_on_where_the_registry_stands() -> None:
    """A 40 MiB blob in 16 MiB PATCHes through a proxy that cuts the first PATCH after
    5 MiB: the client asks the upload's Range and sends the rest; the blob is whole."""
    import asyncio
    import hashlib
    import os

    from matou.registry.client import Pusher
    from matou.registry.server import build_app
    from matou.registry.storage import Memory
    from matou.registry.store import Store

    store = Store(Memory())
    server = TestServer(build_app(store))
    await server.start_server()
    cuts: list[int] = []

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                   cutting: bool) -> None:
        in_patch = -1  # bytes of the first PATCH seen so far (-1: none yet)
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
                if cutting and not cuts:
                    if in_patch < 0 and b"PATCH " in data:
                        in_patch = 0
                    if in_patch >= 0:
                        in_patch += len(data)
                        if in_patch >= 5 << 20:
                            cuts.append(in_patch)
                            break
        except ConnectionError:
            pass
        finally:
            dst.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.gather(pipe(reader, up_w, True), pipe(up_r, writer, False))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    blob = os.urandom(40 << 20)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(blob), 1 << 20):
            yield blob[i:i + (1 << 20)]

    reg = Registry(f"127.0.0.1:{port}", plain_http=True)
    try:
        await Pusher(reg, "big/blob").upload(digest, len(blob), chunks())
    finally:
        await reg.close()
        proxy.close()
        await server.close()
    assert cuts, "the proxy never cut a PATCH"
    assert store.blob_size("big/blob", digest)[1] == len(blob)
    with store.open_blob(store.blob_size("big/blob", digest)[0]) as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest.split(":")[1]
