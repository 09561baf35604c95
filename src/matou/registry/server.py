"""matou-registry's HTTP edge: the OCI distribution API (and Docker's /v1/search) over
aiohttp, every route a thin call into the Store; RegistryError → OCI's error body.

    /v2/                                        GET: API version check
    /v2/<name>/blobs/<digest>                   GET (Range) HEAD DELETE
    /v2/<name>/blobs/uploads/                   POST (?digest= monolithic, ?mount=&from=)
    /v2/<name>/blobs/uploads/<id>               GET (status) PATCH (chunk) PUT (?digest=) DELETE
    /v2/<name>/manifests/<reference>            GET HEAD PUT (?tag=…) DELETE
    /v2/<name>/tags/list                        GET ?n=&last=
    /v2/<name>/referrers/<digest>               GET ?artifactType=
    /v2/_catalog                                GET ?n=&last=
    /v1/search                                  GET ?q=&n=  (docker search)

Repository names contain slashes, so the routes match the path by hand.

May import: registry, oci, errors (and aiohttp, stdlib).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from matou.registry.store import RegistryError, Store

log = logging.getLogger("matou.registry")

_ROUTE = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>blobs/uploads|blobs|manifests|tags|"
                    r"referrers)(?:/(?P<rest>.*))?$")
STORE = web.AppKey("store", Store)
AUTH = web.AppKey("auth", dict)
CLAIMS = web.RequestKey("claims", dict)  # the verified token, when auth is by token
CHUNK = 1 << 20


def _error(e: RegistryError) -> web.Response:
    body = {"errors": [{"code": "BLOB_UPLOAD_INVALID" if e.code == "RANGE_INVALID" else
                        e.code, "message": e.message, "detail": e.detail}]}
    return web.json_response(body, status=e.status,
                             headers={"Docker-Distribution-API-Version": "registry/2.0"})


def _denied(request: web.Request, conf: dict[str, Any], scope: str) -> web.Response:
    if conf["mode"] == "basic":
        challenge = 'Basic realm="matou-registry"'
    else:
        challenge = f'Bearer realm="{conf["realm"]}",service="{conf["service"]}"' + (
            f',scope="{scope}"' if scope else "")
    resp = _error(RegistryError("UNAUTHORIZED", "authentication required"))
    resp.headers["WWW-Authenticate"] = challenge
    return resp


def _check_auth(request: web.Request, conf: dict[str, Any]) -> web.Response | None:
    """None when the request may go on; else the 401 that says how to authenticate."""
    from matou.registry import auth

    m = _ROUTE.match(request.path)
    name = m["name"] if m else ""
    action = "pull" if request.method in ("GET", "HEAD") else \
        "delete" if request.method == "DELETE" else "push"
    wanted = {"pull": "pull", "push": "pull,push", "delete": "delete"}[action]
    scope = f"repository:{name}:{wanted}" if name else ""
    header = request.headers.get("Authorization", "")
    if conf["mode"] == "basic":
        creds = auth.basic_credentials(header)
        if creds and conf["users"].check(*creds):
            return None
        return _denied(request, conf, scope)
    scheme, _, token = header.partition(" ")
    claims = conf["tokens"].verify(token) if scheme.lower() == "bearer" else None
    if claims is not None and (not name or auth.allowed(claims, name, action)):
        request[CLAIMS] = claims
        return None
    return _denied(request, conf, scope)


def _may_read(request: web.Request, name: str) -> bool:
    """Whether the client may pull ``name`` (a mount's source must be readable to it)."""
    from matou.registry import auth

    if request.app[AUTH]["mode"] != "token":
        return True  # no auth, or Basic: every user may read every repository
    claims = request.get(CLAIMS)
    return claims is not None and auth.allowed(claims, name, "pull")


async def token(request: web.Request) -> web.StreamResponse:
    """Docker's token endpoint: Basic credentials in, a token for the asked scopes out."""
    from matou.registry import auth

    conf = request.app[AUTH]
    creds = auth.basic_credentials(request.headers.get("Authorization", ""))
    if creds is None or not conf["users"].check(*creds):
        resp = _error(RegistryError("UNAUTHORIZED", "incorrect username or password"))
        resp.headers["WWW-Authenticate"] = 'Basic realm="matou-registry"'
        return resp
    access = [a for scope in request.query.getall("scope", [])
              for a in auth.parse_scope(scope)]
    t = conf["tokens"].issue(creds[0], access)
    return web.json_response({"token": t, "access_token": t, "expires_in": auth.TOKEN_TTL,
                              "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                         time.gmtime())})


@web.middleware
async def _middleware(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    conf = request.app[AUTH]
    if conf["mode"] != "none" and request.path != "/token":
        denied = _check_auth(request, conf)
        if denied is not None:
            return denied
    try:
        resp = await handler(request)
    except RegistryError as e:
        return _error(e)
    except web.HTTPException:
        raise
    except Exception as e:  # a bug, not the client's fault: say so, keep serving
        log.exception("%s %s", request.method, request.path)
        return _error(RegistryError("UNSUPPORTED", f"internal error: {e}", status=500))
    resp.headers.setdefault("Docker-Distribution-API-Version", "registry/2.0")
    return resp


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    while chunk := await request.content.read(CHUNK):
        yield chunk


async def _append(store: Store, up: Any, request: web.Request, start: int | None) -> Any:
    """Stream the request body onto the upload, in a worker thread, piece by piece."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in _body(request):
        chunks.append(chunk)
        size += len(chunk)
        if size >= 2 * CHUNK:  # bounded memory per upload, whatever its size
            up = await asyncio.to_thread(store.append, up, iter(chunks), start)
            start = None if start is None else up.size
            chunks, size = [], 0
    if chunks or start is not None:
        up = await asyncio.to_thread(store.append, up, iter(chunks), start)
    return up


def _upload_headers(name: str, up: Any) -> dict[str, str]:
    return {"Location": f"/v2/{name}/blobs/uploads/{up.id}",
            "Range": f"0-{max(up.size - 1, 0)}", "Docker-Upload-UUID": up.id}


def _page(items: list[str], request: web.Request, url: str, key: str,
          extra: dict[str, Any]) -> web.Response:
    last = request.query.get("last")
    if last:
        items = [i for i in items if i > last]
    headers = {}
    n_text = request.query.get("n")
    if n_text is not None:
        try:
            n = int(n_text)
        except ValueError as e:
            raise RegistryError("UNSUPPORTED", "n must be a number", status=400) from e
        if n < 0:
            raise RegistryError("UNSUPPORTED", "n must not be negative", status=400)
        if len(items) > n:
            items = items[:n]
            if items:
                headers["Link"] = f'<{url}?n={n}&last={items[-1]}>; rel="next"'
    return web.json_response({**extra, key: items}, headers=headers)


async def dispatch(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    m = _ROUTE.match(request.path)
    if m is None:
        raise RegistryError("NAME_INVALID" if request.path.startswith("/v2/") else
                            "UNSUPPORTED", "not found", status=404)
    name, kind, rest = m["name"], m["kind"], m["rest"] or ""
    method = request.method
    if kind == "blobs":
        return await _blob(store, request, name, rest, method)
    if kind == "blobs/uploads":
        return await _upload(store, request, name, rest, method)
    if kind == "manifests":
        return await _manifest(store, request, name, rest, method)
    if kind == "tags" and rest == "list" and method == "GET":
        tags = await asyncio.to_thread(store.tags, name)
        if not tags and not await asyncio.to_thread(store.repo_exists, name):
            raise RegistryError("NAME_UNKNOWN", "repository name not known to registry",
                                {"name": name})
        return _page(tags, request, f"/v2/{name}/tags/list", "tags", {"name": name})
    if kind == "referrers" and method == "GET":
        artifact = request.query.get("artifactType", "")
        found = await asyncio.to_thread(store.referrers, name, rest, artifact)
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": found}
        headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
        if artifact:
            headers["OCI-Filters-Applied"] = "artifactType"
        return web.Response(body=json.dumps(index).encode(), headers=headers)
    raise RegistryError("UNSUPPORTED", f"{method} is not supported here")


async def _blob(store: Store, request: web.Request, name: str, digest: str,
                method: str) -> web.StreamResponse:
    if method == "DELETE":
        await asyncio.to_thread(store.delete_blob, name, digest)
        return web.Response(status=202)
    if method not in ("GET", "HEAD"):
        raise RegistryError("UNSUPPORTED", f"{method} is not supported on blobs")
    dg, size = await asyncio.to_thread(store.blob_size, name, digest)
    headers = {"Docker-Content-Digest": str(dg), "Content-Type": "application/octet-stream",
               "Accept-Ranges": "bytes"}
    start, end, status = 0, size - 1, 200
    rng = request.headers.get("Range")
    if rng:
        mr = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        if mr is None or (not mr[1] and not mr[2]):
            raise RegistryError("RANGE_INVALID", "bad Range", status=416)
        if mr[1]:
            start = int(mr[1])
            end = min(int(mr[2]), size - 1) if mr[2] else size - 1
        else:  # the last N bytes
            start, end = max(size - int(mr[2]), 0), size - 1
        if start > end or start >= size:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = end - start + 1 if size else 0
    headers["Content-Length"] = str(length)
    if method == "HEAD":
        return web.Response(status=status, headers=headers)
    resp = web.StreamResponse(status=status, headers=headers)
    await resp.prepare(request)
    f = await asyncio.to_thread(store.open_blob, dg, start)
    try:
        left = length
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(CHUNK, left))
            if not chunk:
                break
            await resp.write(chunk)
            left -= len(chunk)
    finally:
        f.close()
    await resp.write_eof()
    return resp


async def _upload(store: Store, request: web.Request, name: str, ident: str,
                  method: str) -> web.StreamResponse:
    if method == "POST" and not ident:
        mount, source = request.query.get("mount", ""), request.query.get("from", "")
        # a source the client may not read is not mounted: the upload starts instead
        mounted = bool(mount) and _may_read(request, source) and await asyncio.to_thread(
            store.mount, name, mount, source)
        if mounted:
            return web.Response(status=201, headers={
                "Location": f"/v2/{name}/blobs/{mount}", "Docker-Content-Digest": mount})
        up = await asyncio.to_thread(store.start_upload, name)
        digest = request.query.get("digest")
        if digest:  # monolithic: the body is the whole blob
            up = await _append(store, up, request, None)
            dg = await asyncio.to_thread(store.finish, up, digest)
            return web.Response(status=201, headers={
                "Location": f"/v2/{name}/blobs/{dg}", "Docker-Content-Digest": str(dg)})
        return web.Response(status=202, headers=_upload_headers(name, up))
    up = await asyncio.to_thread(store.upload, name, ident)
    if method == "GET":
        return web.Response(status=204, headers=_upload_headers(name, up))
    if method == "DELETE":
        await asyncio.to_thread(store.cancel, up)
        return web.Response(status=204)
    if method == "PATCH":
        start = None
        cr = request.headers.get("Content-Range")
        if cr:
            mr = re.fullmatch(r"(?:bytes )?(\d+)-(\d+)", cr.strip())
            if mr is None:
                raise RegistryError("RANGE_INVALID", "bad Content-Range", status=416)
            start = int(mr[1])
            if start != up.size:
                return web.Response(status=416, headers=_upload_headers(name, up))
        up = await _append(store, up, request, start)
        return web.Response(status=202, headers=_upload_headers(name, up))
    if method == "PUT":
        digest = request.query.get("digest")
        if not digest:
            raise RegistryError("DIGEST_INVALID", "digest parameter missing")
        cr = request.headers.get("Content-Range")
        if cr:  # a last chunk must continue the upload too
            mr = re.fullmatch(r"(?:bytes )?(\d+)-(\d+)", cr.strip())
            if mr is None or int(mr[1]) != up.size:
                return web.Response(status=416, headers=_upload_headers(name, up))
        up = await _append(store, up, request, None)
        dg = await asyncio.to_thread(store.finish, up, digest)
        return web.Response(status=201, headers={
            "Location": f"/v2/{name}/blobs/{dg}", "Docker-Content-Digest": str(dg)})
    raise RegistryError("UNSUPPORTED", f"{method} is not supported on uploads")


async def _manifest(store: Store, request: web.Request, name: str, ref: str,
                    method: str) -> web.StreamResponse:
    if method == "PUT":
        if (request.content_length or 0) > (4 << 20):
            raise RegistryError("SIZE_INVALID", "manifest too big (4 MiB at most)")
        data = await request.content.read()  # to the end (read(n) may stop short)
        if len(data) > (4 << 20):
            raise RegistryError("SIZE_INVALID", "manifest too big (4 MiB at most)")
        media_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        tags = tuple(request.query.getall("tag", []))
        dg, subject = await asyncio.to_thread(store.put_manifest, name, ref, data, media_type,
                                              tags)
        headers = CIMultiDict({"Location": f"/v2/{name}/manifests/{dg}",
                               "Docker-Content-Digest": str(dg)})
        if subject is not None:
            headers["OCI-Subject"] = str(subject)
        for t in tags:  # each tag the push by digest also set
            headers.add("OCI-Tag", t)
        return web.Response(status=201, headers=headers)
    if method == "DELETE":
        await asyncio.to_thread(store.delete_manifest, name, ref)
        return web.Response(status=202)
    if method not in ("GET", "HEAD"):
        raise RegistryError("UNSUPPORTED", f"{method} is not supported on manifests")
    dg, media_type, data = await asyncio.to_thread(store.manifest, name, ref)
    found = {"Docker-Content-Digest": str(dg), "Content-Type": media_type,
             "Content-Length": str(len(data))}
    if method == "HEAD":
        return web.Response(status=200, headers=found)
    return web.Response(status=200, body=data, headers=found)


async def base(request: web.Request) -> web.StreamResponse:
    return web.json_response({})


async def catalog(request: web.Request) -> web.StreamResponse:
    repos = await asyncio.to_thread(request.app[STORE].catalog)
    return _page(repos, request, "/v2/_catalog", "repositories", {})


async def search(request: web.Request) -> web.StreamResponse:
    """Docker's v1 search, for `docker search`: repositories whose name has the term."""
    term = request.query.get("q", "").lower()
    n = int(request.query.get("n") or 25)
    repos = await asyncio.to_thread(request.app[STORE].catalog)
    found = [r for r in repos if term in r.lower()][:n]
    return web.json_response({"query": term, "num_results": len(found), "results": [
        {"name": r, "description": "", "star_count": 0, "is_official": False,
         "is_automated": False} for r in found]})


def build_app(store: Store, htpasswd: str = "", mode: str = "token", realm: str = "",
              service: str = "matou-registry") -> web.Application:
    """The registry; with ``htpasswd``, authenticated by ``mode`` (basic or token)."""
    from matou.registry import auth

    app = web.Application(middlewares=[_middleware], client_max_size=1 << 40)
    app[STORE] = store
    app[AUTH] = {"mode": mode if htpasswd else "none", "realm": realm, "service": service,
                 "users": auth.Htpasswd(htpasswd) if htpasswd else None,
                 "tokens": auth.Tokens()}
    app.router.add_route("GET", "/token", token)
    app.router.add_route("GET", "/v2/", base)
    app.router.add_route("GET", "/v2", base)
    app.router.add_route("GET", "/v2/_catalog", catalog)
    app.router.add_route("GET", "/v1/search", search)
    app.router.add_route("*", "/v2/{tail:.+}", dispatch)
    return app

