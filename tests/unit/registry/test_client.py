"""The registry client's Bearer flow: a token asked for and presented, and a blob
redirected to storage elsewhere fetched without it (the token is not leaked)."""

from __future__ import annotations

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
