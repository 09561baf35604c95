"""The distribution client: what matoud speaks to any registry (Docker Hub unchanged, a
local matou-registry, CNCF distribution). The /v2/ API over aiohttp, Bearer token auth
(tokens cached per scope; anonymous or with credentials) and Basic auth, manifests with
every media type Docker accepts, blobs streamed.

    Docker Hub: docker.io → registry-1.docker.io; plain HTTP only for insecure registries
    (localhost and 127.0.0.0/8 always, as dockerd).

May import: oci, errors (and aiohttp, stdlib).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import aiohttp
from yarl import URL

from matou.errors import FailedPrecondition, InvalidArgument, NotFound
from matou.oci import image as oci

ACCEPT = ", ".join([oci.OCI_INDEX, oci.DOCKER_MANIFEST_LIST, oci.OCI_MANIFEST,
                    oci.DOCKER_MANIFEST])


class Credentials(NamedTuple):
    username: str = ""
    password: str = ""
    token: str = ""          # an identity token (refresh token), as docker login keeps


def registry_host(domain: str) -> str:
    return "registry-1.docker.io" if domain in ("docker.io", "index.docker.io") else domain


def insecure(host: str, configured: tuple[str, ...] = ()) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]")
    if name == "localhost" or host in configured or name in configured:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


class Registry:
    """One registry host; one aiohttp session; tokens by scope."""

    def __init__(self, host: str, plain_http: bool, creds: Credentials | None = None,
                 session: aiohttp.ClientSession | None = None, base: str = "") -> None:
        self.host = registry_host(host)
        # ``base``: a mirror's own URL (scheme included), standing in for Docker Hub
        self.base = base.rstrip("/") or f"{'http' if plain_http else 'https'}://{self.host}"
        self.creds = creds
        self.session = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120))
        self.tokens: dict[str, str] = {}
        self.basic = False

    async def close(self) -> None:
        await self.session.close()

    def _auth_header(self, scope: str) -> dict[str, str]:
        if scope in self.tokens:
            return {"Authorization": f"Bearer {self.tokens[scope]}"}
        if self.basic and self.creds and self.creds.username:
            raw = f"{self.creds.username}:{self.creds.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    async def _token(self, params: dict[str, str], scope: str) -> None:
        realm = params.get("realm")
        if not realm:
            raise FailedPrecondition(f"{self.host}: a Bearer challenge without a realm")
        # several scopes (a mount reads another repository) go as several parameters
        query = [("service", params.get("service", ""))] + [("scope", x) for x in
                                                            scope.split()]
        auth = None
        if self.creds and self.creds.username:
            auth = aiohttp.BasicAuth(self.creds.username, self.creds.password)
        async with self.session.get(realm, params=query, auth=auth) as r:
            if r.status == 401:
                raise FailedPrecondition(f"{self.host}: unauthorized: incorrect username or "
                                         "password")
            if r.status >= 400:
                raise FailedPrecondition(f"{self.host}: token endpoint answered {r.status}")
            data = await r.json(content_type=None)
        token = data.get("token") or data.get("access_token")
        if not token:
            raise FailedPrecondition(f"{self.host}: the token endpoint gave no token")
        self.tokens[scope] = token

    async def request(self, method: str, path: str, scope: str,
                      headers: dict[str, str] | None = None,
                      allow_redirects: bool = True,
                      body: bytes | None = None) -> aiohttp.ClientResponse:
        """A request with auth: on 401, answer the challenge once and retry. Redirects
        (blob storage) are followed without the Authorization header."""
        for attempt in range(2):
            hdrs = {**(headers or {}), **self._auth_header(scope)}
            try:
                r = await self.session.request(method, self.base + path, headers=hdrs,
                                               allow_redirects=False, data=body)
            except aiohttp.ClientError as e:
                raise FailedPrecondition(f"{method} \"{self.base}{path}\": {e}") from e
            if r.status in (301, 302, 303, 307, 308) and allow_redirects:
                location = r.headers.get("Location", "")
                r.release()
                # another host gets no token of ours
                return await self.session.request(method, r.url.join(URL(location)),
                                                  headers=headers, allow_redirects=True)
            if r.status != 401 or attempt:
                return r
            scheme, params = _challenge(r.headers.get("WWW-Authenticate", ""))
            r.release()
            if scheme == "bearer":
                asked = params.get("scope", "").split()
                wanted = " ".join([*asked, *(x for x in scope.split() if x not in asked)])
                await self._token(params, wanted)
                if wanted != scope:
                    self.tokens[scope] = self.tokens[wanted]
            elif scheme == "basic":
                if not (self.creds and self.creds.username):
                    break
                self.basic = True
            else:
                break
        raise FailedPrecondition(f"{self.host}: unauthorized (pull access denied, the "
                                 "repository does not exist or may require 'docker login')")

    async def ping(self) -> None:
        try:
            r = await self.request("GET", "/v2/", "")
        except aiohttp.ClientError as e:
            raise FailedPrecondition(f"Get \"{self.base}/v2/\": {e}") from e
        r.release()

    async def manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest as the registry says it) of ``ref``."""
        scope = f"repository:{repo}:pull"
        r = await self.request("GET", f"/v2/{repo}/manifests/{ref}", scope,
                               {"Accept": ACCEPT})
        try:
            if r.status == 404:
                raise NotFound(f"manifest for {self.host}/{repo}:{ref} not found: manifest "
                               "unknown: manifest unknown")
            if r.status >= 400:
                raise FailedPrecondition(f"{self.host}/{repo}:{ref}: the registry answered "
                                         f"{r.status}: {(await r.text())[:200]}")
            data = await r.read()
            return data, r.headers.get("Content-Type", "").split(";")[0], \
                r.headers.get("Docker-Content-Digest", "")
        finally:
            r.release()

    async def blob(self, repo: str, digest: str, offset: int = 0) -> AsyncIterator[bytes]:
        """The blob's bytes from ``offset`` on (a Range request resumes a download)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        r = await self.request("GET", f"/v2/{repo}/blobs/{digest}",
                               f"repository:{repo}:pull", headers)
        try:
            if r.status == 404:
                raise NotFound(f"{self.host}/{repo}: blob {digest} unknown")
            if r.status >= 400:
                raise FailedPrecondition(f"{self.host}/{repo}: blob {digest}: {r.status}")
            if offset and r.status != 206:
                raise InvalidArgument("the registry ignored the Range of a resumed download")
            try:
                async for chunk in r.content.iter_chunked(1 << 20):
                    yield chunk
            except aiohttp.ClientPayloadError as e:  # cut off: the caller may resume
                raise ConnectionError(f"{self.host}/{repo}: blob {digest}: {e}") from e
        finally:
            r.release()


CHUNK = 16 << 20  # blobs above this go up in PATCHes of this size


async def _pieces(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """The stream re-cut into pieces of ``size`` bytes (the last one shorter)."""
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


class Pusher:
    """The push side of a Registry: blob existence, cross-repository mount, monolithic
    and chunked uploads, manifest PUT (scope push+pull)."""

    def __init__(self, reg: Registry, repo: str) -> None:
        self.reg = reg
        self.repo = repo
        self.scope = f"repository:{repo}:push,pull"

    async def has(self, digest: str) -> bool:
        r = await self.reg.request("HEAD", f"/v2/{self.repo}/blobs/{digest}", self.scope)
        r.release()
        return r.status == 200

    async def mount(self, digest: str, source: str) -> URL | None:
        """Ask the registry to link ``digest`` from the repository ``source`` (on the same
        host) instead of uploading it. None when it did; else the upload it started."""
        scope = f"{self.scope} repository:{source}:pull"
        r = await self.reg.request(
            "POST", f"/v2/{self.repo}/blobs/uploads/?mount={digest}&from={source}", scope)
        r.release()
        if r.status == 201:
            return None
        return self._upload_url(r, digest)

    def _upload_url(self, r: aiohttp.ClientResponse, digest: str) -> URL:
        location = r.headers.get("Location", "")
        if r.status != 202 or not location:
            raise FailedPrecondition(f"{self.reg.host}/{self.repo}: upload of {digest} "
                                     f"refused ({r.status})")
        return URL(location) if location.startswith("http") else \
            URL(self.reg.base).join(URL(location))

    async def upload(self, digest: str, size: int, chunks: AsyncIterator[bytes],
                     url: URL | None = None) -> None:
        """Send a blob: in one PUT when small, else PATCH by PATCH (each a Content-Range
        of CHUNK bytes) and a closing PUT — on the upload ``url`` if one is started."""
        if url is None:
            r = await self.reg.request("POST", f"/v2/{self.repo}/blobs/uploads/", self.scope)
            r.release()
            url = self._upload_url(r, digest)
        auth = self.reg._auth_header(self.scope)
        data: AsyncIterator[bytes] | bytes = chunks
        if size > CHUNK:
            offset = 0
            async for piece in _pieces(chunks, CHUNK):
                url = await self._send_piece(url, digest, piece, offset, auth)
                offset += len(piece)
            data, size = b"", 0
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size),
                   **auth}
        try:
            async with self.reg.session.put(url.update_query({"digest": digest}), data=data,
                                            headers=headers) as put:
                if put.status != 201:
                    raise FailedPrecondition(f"{self.reg.host}/{self.repo}: blob {digest}: "
                                             f"{put.status} {(await put.text())[:200]}")
        except aiohttp.ClientError as e:  # the caller may send the blob again
            raise ConnectionError(f"{self.reg.host}/{self.repo}: blob {digest}: {e}") from e

    async def _send_piece(self, url: URL, digest: str, piece: bytes, offset: int,
                          auth: dict[str, str], attempts: int = 4) -> URL:
        """PATCH one chunk at ``offset``. When the connection breaks, ask the registry how
        far the upload got (GET: its Range) and send the rest of the chunk from there."""
        sent = 0
        for attempt in range(attempts):
            start = offset + sent
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Range": f"{start}-{offset + len(piece) - 1}",
                       "Content-Length": str(len(piece) - sent), **auth}
            try:
                async with self.reg.session.patch(url, data=piece[sent:],
                                                  headers=headers) as r:
                    if r.status == 202:
                        return self._upload_url(r, digest)
                    if r.status != 416:
                        raise FailedPrecondition(
                            f"{self.reg.host}/{self.repo}: blob {digest}: chunk at {start}: "
                            f"{r.status} {(await r.text())[:200]}")
            except (TimeoutError, aiohttp.ClientError, ConnectionError) as e:
                if attempt == attempts - 1:
                    raise ConnectionError(f"{self.reg.host}/{self.repo}: blob {digest}: "
                                          f"{e}") from e
            url, have = await self._upload_status(url, digest, auth)
            if not offset <= have <= offset + len(piece):
                raise FailedPrecondition(f"{self.reg.host}/{self.repo}: blob {digest}: the "
                                         f"upload stands at {have}, not within the chunk at "
                                         f"{offset}")
            sent = have - offset
            if sent == len(piece):
                return url
        raise FailedPrecondition(f"{self.reg.host}/{self.repo}: blob {digest}: the chunk at "
                                 f"{offset} did not go through")

    async def _upload_status(self, url: URL, digest: str, auth: dict[str, str]
                             ) -> tuple[URL, int]:
        """Where an upload stands: its URL and how many bytes the registry holds."""
        async with self.reg.session.get(url, headers=auth) as r:
            if r.status != 204:
                raise FailedPrecondition(f"{self.reg.host}/{self.repo}: blob {digest}: the "
                                         f"upload is gone ({r.status})")
            rng = r.headers.get("Range", "0-0").rpartition("-")[2]
            have = int(rng) + 1 if rng.isdigit() else 0
            location = r.headers.get("Location", "")
            if location:
                url = URL(location) if location.startswith("http") else \
                    URL(self.reg.base).join(URL(location))
            return url, have

    async def manifest(self, ref: str, data: bytes, media_type: str) -> str:
        r = await self.reg.request("PUT", f"/v2/{self.repo}/manifests/{ref}", self.scope,
                                   {"Content-Type": media_type}, body=data)
        try:
            if r.status != 201:
                raise FailedPrecondition(f"{self.reg.host}/{self.repo}:{ref}: manifest "
                                         f"refused ({r.status}): {(await r.text())[:200]}")
            return r.headers.get("Docker-Content-Digest", "")
        finally:
            r.release()


async def search(host: str, term: str, limit: int, plain_http: bool,
                 creds: Credentials | None = None) -> list[dict[str, Any]]:
    """Docker's v1 search on ``host``: [{name, description, star_count, is_official,
    is_automated}]."""
    base = f"{'http' if plain_http else 'https'}://" + (
        "index.docker.io" if host in ("docker.io", "index.docker.io") else host)
    auth = aiohttp.BasicAuth(creds.username, creds.password) if creds and creds.username \
        else None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s, \
            s.get(f"{base}/v1/search", params={"q": term, "n": str(limit)}, auth=auth) as r:
        if r.status >= 400:
            raise FailedPrecondition(f"{host}: search answered {r.status}")
        data = await r.json(content_type=None)
    return [{"name": x.get("name", ""), "description": x.get("description", ""),
             "star_count": x.get("star_count", 0), "is_official": bool(x.get("is_official")),
             "is_automated": bool(x.get("is_automated"))} for x in data.get("results") or []]


async def login(host: str, plain_http: bool, creds: Credentials) -> None:
    """Check ``creds`` against the registry the way a pull would use them."""
    reg = Registry(host, plain_http, creds)
    try:
        r = await reg.request("GET", "/v2/", "")
        r.release()
        if r.status == 401:
            raise FailedPrecondition("unauthorized: incorrect username or password")
    finally:
        await reg.close()
