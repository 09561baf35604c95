"""Image endpoints, in Docker's JSON shapes (the only place those shapes exist)."""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from typing import Any

from aiohttp import web

from matou.api.server import engine_of, filters, flag, json_response, stream_tar
from matou.errors import InvalidArgument, NotFound
from matou.images.store import Image
from matou.oci import reference, timestamps

CHUNK = 1 << 20


def _seconds(text: str) -> int:
    return int(timestamps.parse(text) or 0)


def _created(img: Image) -> int:
    return _seconds(img.config.created)


def _familiar(tags: tuple[str, ...]) -> list[str]:
    return [reference.parse(t).familiar() for t in tags]


def _repo_digests(img: Image) -> list[str]:
    """NAME@DIGEST for each repository the image was pulled from or pushed to."""
    out = []
    for item in img.repo_digests:
        name, _, digest = item.partition("@")
        try:
            out.append(f"{reference.parse(name).familiar_name}@{digest}")
        except InvalidArgument:
            continue
    return out


def summary(img: Image, containers: int = -1) -> dict[str, Any]:
    labels = img.config.config.get("Labels") or {}
    return {"Id": str(img.id), "ParentId": str(img.parent or ""),
            "RepoTags": _familiar(img.tags), "RepoDigests": _repo_digests(img),
            "Created": _created(img), "Size": img.size, "SharedSize": -1,
            "VirtualSize": img.size, "Labels": labels, "Containers": containers}


def inspect(img: Image, graph: dict[str, str]) -> dict[str, Any]:
    cfg = img.config
    return {
        "Id": str(img.id), "RepoTags": _familiar(img.tags), "RepoDigests": _repo_digests(img),
        "Parent": str(img.parent or ""), "Comment": _comment(img), "Created": cfg.created,
        "DockerVersion": cfg.raw.get("docker_version", ""), "Author": cfg.author,
        "Config": _config(cfg.config), "Architecture": cfg.architecture,
        **({"Variant": cfg.variant} if cfg.variant else {}), "Os": cfg.os,
        "Size": img.size, "VirtualSize": img.size,
        "GraphDriver": {"Name": "overlay2", "Data": graph},
        "RootFS": {"Type": "layers", "Layers": [str(d) for d in cfg.rootfs_diff_ids]},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def _comment(img: Image) -> str:
    history = img.config.history
    return str(history[-1].get("comment", "")) if history else ""


_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
    "AttachStdout": False, "AttachStderr": False, "Tty": False, "OpenStdin": False,
    "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
    "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
}


def _config(c: dict[str, Any]) -> dict[str, Any]:
    return {**_CONFIG_DEFAULTS, **c}


async def list_images(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    f = filters(request)
    unknown = set(f) - {"dangling", "reference", "label", "before", "since"}
    if unknown:
        raise InvalidArgument(f"invalid filter '{sorted(unknown)[0]}'")
    images = await e.images.all()
    by_name = {str(i.id): i for i in images}
    parents = {str(i.parent) for i in images if i.parent}
    out = []
    for img in images:
        if not flag(request, "all") and not img.tags and str(img.id) in parents:
            continue  # intermediate images are shown with all=1 only, as Docker does
        if not _match(img, f, by_name):
            continue
        s = summary(img)
        if "reference" in f:  # as dockerd: only the tags the filter matched are listed
            s["RepoTags"] = [t for t in s["RepoTags"] if _ref_matches(t, f["reference"])]
        out.append(s)
    out.sort(key=lambda s: -s["Created"])
    return json_response(out)


def _match(img: Image, f: dict[str, list[str]], by_name: dict[str, Image]) -> bool:
    for key, wanted in f.items():
        if key == "dangling":
            want = wanted[0].lower() in ("1", "true")
            if (not img.tags) != want:
                return False
        elif key == "reference":
            tags = [reference.parse(t).familiar() for t in img.tags]
            if not any(_ref_matches(t, wanted) for t in tags):
                return False
        elif key == "label":
            labels = img.config.config.get("Labels") or {}
            for w in wanted:
                k, eq, v = w.partition("=")
                if k not in labels or (eq and labels[k] != v):
                    return False
        elif key in ("before", "since"):
            ref = next((i for n, i in by_name.items() if wanted[0] in (n, n[7:19]) or any(
                reference.parse(t).familiar() == wanted[0] for t in i.tags)), None)
            if ref is None:
                raise NotFound(f"No such image: {wanted[0]}")
            if key == "before" and not _created(img) < _created(ref):
                return False
            if key == "since" and not _created(img) > _created(ref):
                return False
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


def _ref_matches(tag: str, patterns: list[str]) -> bool:
    import fnmatch

    repo = tag.rsplit(":", 1)[0]
    return any(fnmatch.fnmatch(tag, p) or fnmatch.fnmatch(repo, p) for p in patterns)


async def inspect_image(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    img = await e.images.get(request.match_info["name"])
    store = e.images.store
    graph: dict[str, str] = {}
    if img.top_layer and store.snapshots.exists(img.top_layer):
        chain = store.snapshots.chain(img.top_layer)
        graph = {"UpperDir": store.snapshots.fs_dir(chain[0].name),
                 "LowerDir": ":".join(store.snapshots.fs_dir(i.name) for i in chain[1:])}
    return json_response(inspect(img, graph))


async def history(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    img, hist = await e.images.history(request.match_info["name"])
    out = []
    layer = len(img.config.rootfs_diff_ids) - 1
    sizes = list(img.layer_sizes)
    for i, h in enumerate(reversed(hist)):
        empty = bool(h.get("empty_layer"))
        size = 0
        if not empty and 0 <= layer < len(sizes):
            size = sizes[layer]
        if not empty:
            layer -= 1
        out.append({"Id": str(img.id) if i == 0 else "<missing>",
                    "Created": _seconds(h.get("created", "")),
                    "CreatedBy": h.get("created_by", ""),
                    "Tags": _familiar(img.tags) if i == 0 else None, "Size": size,
                    "Comment": h.get("comment", "")})
    return json_response(out)


async def tag(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    repo = request.query.get("repo")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    await e.images.tag(request.match_info["name"], repo, request.query.get("tag") or None)
    return web.Response(status=201)


async def remove(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    out = await e.images.delete(request.match_info["name"], flag(request, "force"),
                                e.containers.images_in_use())
    return json_response(out)


async def prune(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    f = filters(request)
    dangling = [v.lower() for v in f.get("dangling", ["true"])]
    before = {str(i.id): i.size for i in await e.images.all()}
    deleted = await e.images.prune(dangling_only=dangling[0] in ("1", "true"),
                                   in_use=e.containers.images_in_use())
    return json_response({"ImagesDeleted": [{"Deleted": d} for d in deleted] or None,
                              "SpaceReclaimed": sum(before.get(d, 0) for d in deleted)})


async def _spool(request: web.Request, directory: str) -> Any:
    """The request body in an unnamed temporary file (archives may be gigabytes)."""
    f = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (the caller closes it)
    while True:
        chunk = await request.content.read(CHUNK)
        if not chunk:
            break
        await asyncio.to_thread(f.write, chunk)
    f.seek(0)
    return f


async def load(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    with await _spool(request, e.images.store.content.ingest_dir) as body:
        try:
            loaded = await e.images.load(body)
        except InvalidArgument as err:
            # dockerd answers 200 and puts a bad archive's error in the progress stream
            msg = str(err)
            return web.Response(body=json.dumps({"errorDetail": {"message": msg},
                                                 "error": msg}).encode() + b"\r\n",
                                content_type="application/json")
    lines = []
    for item in loaded:
        for t in item.tags:
            lines.append({"stream": f"Loaded image: {reference.parse(t).familiar()}\n"})
        if not item.tags:
            lines.append({"stream": f"Loaded image ID: {item.id}\n"})
    return web.Response(body=b"".join(json.dumps(x).encode() + b"\r\n" for x in lines),
                        content_type="application/json")


async def save(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    names = request.query.getall("names", []) if "name" not in request.match_info else [
        request.match_info["name"]]
    if not names:
        raise InvalidArgument("no images to save: give names=…")
    for n in names:
        await e.images.get(n)  # 404 before the first byte
    return await stream_tar(request, lambda out: e.images.save(names, out))


async def create(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    q = request.query
    if q.get("fromSrc"):
        if q["fromSrc"] != "-":
            raise InvalidArgument("importing from a URL is not supported; send the tarball")
        repo = q.get("repo", "")
        tags = [f"{repo}:{q['tag']}" if q.get("tag") else repo] if repo else []
        changes = q.getall("changes", [])
        with await _spool(request, e.images.store.content.ingest_dir) as body:
            img = await e.images.import_(body, changes, tags, q.get("message", ""), "-")
        return web.Response(body=json.dumps({"status": str(img.id)}).encode() + b"\r\n",
                            content_type="application/json")
    image = q.get("fromImage")
    if not image:
        raise InvalidArgument("fromImage or fromSrc is required")
    tag = q.get("tag", "")
    text = image if not tag else (f"{image}@{tag}" if ":" in tag else f"{image}:{tag}")
    ref = reference.parse(text)
    creds = _credentials(request.headers.get("X-Registry-Auth", ""))
    resp: web.StreamResponse | None = None

    async def emit(msg: dict[str, Any]) -> None:
        nonlocal resp
        if resp is None:
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
        await resp.write(json.dumps(msg).encode() + b"\r\n")

    from matou.engine.pull import pull

    had = e.images.exists(str(ref))
    try:
        async with e.images.lock:
            image_id = await pull(e.images.store, str(ref), emit, creds,
                                  e.config.insecure_registries,
                                  mirrors=e.config.registry_mirrors)
    except Exception as err:  # once the stream has begun, errors travel in it
        if resp is None:
            raise
        await emit({"errorDetail": {"message": str(err)}, "error": str(err)})
        await resp.write_eof()
        return resp
    e.events.emit("image", "pull", image_id, {"name": ref.familiar()})
    await emit({"status": f"Status: {'Image is up to date' if had else 'Downloaded newer image'}"
                          f" for {ref.familiar()}"})
    assert resp is not None
    await resp.write_eof()
    return resp


async def push(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    name = request.match_info["name"]
    tag = request.query.get("tag", "")
    text = f"{name}:{tag}" if tag else name
    creds = _credentials(request.headers.get("X-Registry-Auth", ""))
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})

    async def emit(msg: dict[str, Any]) -> None:
        if not resp.prepared:
            await resp.prepare(request)
        await resp.write(json.dumps(msg).encode() + b"\r\n")

    from matou.engine.push import push as push_image

    try:
        await e.images.get(text)  # a 404 before the first byte
        digest = await push_image(e.images.store, text, emit, creds,
                                  e.config.insecure_registries)
    except Exception as err:  # once the stream has begun, errors travel in it
        if not resp.prepared:
            raise
        await emit({"errorDetail": {"message": str(err)}, "error": str(err)})
        await resp.write_eof()
        return resp
    e.events.emit("image", "push", digest, {"name": reference.parse(text).familiar()})
    await resp.write_eof()
    return resp


async def search(request: web.Request) -> web.StreamResponse:
    """`docker search [HOST/]TERM`: the registry's /v1/search, in Docker's shape."""
    from matou.registry.client import insecure
    from matou.registry.client import search as v1_search

    e = engine_of(request)
    term = request.query.get("term", "")
    if not term:
        raise InvalidArgument("term is required")
    host, slash, rest = term.partition("/")
    if slash and ("." in host or ":" in host or host == "localhost"):
        term = rest
    else:
        host = "docker.io"
    limit = int(request.query.get("limit") or 25)
    creds = _credentials(request.headers.get("X-Registry-Auth", ""))
    results = await v1_search(host, term, limit,
                              insecure(host, e.config.insecure_registries), creds)
    f = filters(request)
    if "is-official" in f:
        want = f["is-official"][0] in ("1", "true")
        results = [r for r in results if r["is_official"] == want]
    if "stars" in f:
        results = [r for r in results if r["star_count"] >= int(f["stars"][0])]
    return json_response(results)


async def auth(request: web.Request) -> web.StreamResponse:
    """`docker login`: the credentials checked against the registry (not kept here: the
    client stores them and sends X-Registry-Auth)."""
    from matou.registry.client import Credentials, insecure, login

    e = engine_of(request)
    body = json.loads(await request.read() or b"{}")
    if not isinstance(body, dict):
        raise InvalidArgument("auth config must be a JSON object")
    server = str(body.get("serveraddress") or "docker.io")
    server = server.split("://", 1)[-1].rstrip("/").removesuffix("/v1").removesuffix("/v2")
    if server in ("index.docker.io", "registry-1.docker.io"):
        server = "docker.io"
    await login(server, insecure(server, e.config.insecure_registries),
                Credentials(str(body.get("username") or ""), str(body.get("password") or "")))
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})


async def distribution(request: web.Request) -> web.StreamResponse:
    """`docker manifest inspect`-like: the registry's descriptor of NAME and its platforms."""
    from matou.oci import image as oci
    from matou.registry.client import Registry, insecure

    e = engine_of(request)
    ref = reference.parse(request.match_info["name"])
    reg = Registry(ref.domain, insecure(ref.domain, e.config.insecure_registries),
                   _credentials(request.headers.get("X-Registry-Auth", "")))
    try:
        data, media_type, said = await reg.manifest(
            ref.path, str(ref.digest) if ref.digest else (ref.tag or "latest"))
        doc = oci.parse_manifest_or_index(data, media_type or None)
        if isinstance(doc, oci.Index):
            platforms = [d.platform.to_json() for d in doc.manifests if d.platform is not None]
        else:
            config = b"".join([c async for c in reg.blob(ref.path, str(doc.config.digest))])
            cfg = json.loads(config)
            platforms = [{"architecture": cfg.get("architecture", ""), "os": cfg.get("os", "")}]
    finally:
        await reg.close()
    import hashlib

    digest = said or "sha256:" + hashlib.sha256(data).hexdigest()
    return json_response({"Descriptor": {"mediaType": media_type, "digest": digest,
                                         "size": len(data)}, "Platforms": platforms})


def _credentials(header: str) -> Any:
    """X-Registry-Auth: base64url JSON {username, password, identitytoken}."""
    from matou.registry.client import Credentials

    if not header:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, TypeError):
        raise InvalidArgument("invalid X-Registry-Auth header") from None
    if not isinstance(data, dict) or not (data.get("username") or data.get("identitytoken")):
        return None
    return Credentials(str(data.get("username") or ""), str(data.get("password") or ""),
                       str(data.get("identitytoken") or ""))


ROUTES = [
    ("GET", "/images/json", list_images),
    ("POST", "/images/create", create),
    ("GET", "/images/search", search),
    ("GET", "/distribution/{name:.+}/json", distribution),
    ("POST", "/auth", auth),
    ("POST", "/images/{name:.+}/push", push),
    ("POST", "/images/load", load),
    ("GET", "/images/get", save),
    ("POST", "/images/prune", prune),
    ("GET", "/images/{name:.+}/json", inspect_image),
    ("GET", "/images/{name:.+}/history", history),
    ("POST", "/images/{name:.+}/tag", tag),
    ("GET", "/images/{name:.+}/get", save),
    ("DELETE", "/images/{name:.+}", remove),
]
