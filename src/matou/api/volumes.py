"""Volume endpoints."""

from __future__ import annotations

from aiohttp import web

from matou.api.server import engine_of, filters, json_body, json_response
from matou.errors import InvalidArgument


def _shape(v: dict[str, object]) -> dict[str, object]:
    return {k: v[k] for k in ("Name", "Driver", "Mountpoint", "CreatedAt", "Labels", "Options",
                              "Scope")}


async def list_(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    f = filters(request)
    used = e.containers.volumes_in_use()
    out = []
    for v in e.volumes.all():
        if "name" in f and not any(n in str(v["Name"]) for n in f["name"]):
            continue
        if "dangling" in f and (v["Name"] in used) == (f["dangling"][0] in ("1", "true")):
            continue
        labels = v["Labels"] or {}
        assert isinstance(labels, dict)
        if "label" in f and not all(w.partition("=")[0] in labels and (
                not w.partition("=")[1] or labels[w.partition("=")[0]] == w.partition("=")[2])
                for w in f["label"]):
            continue
        out.append(_shape(v))
    return json_response({"Volumes": out, "Warnings": []})


async def create(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    body = await json_body(request, required=False) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("volume config must be a JSON object")
    labels = dict(body.get("Labels") or {})
    anonymous = not body.get("Name")
    if anonymous:  # as dockerd 23+: a nameless volume is anonymous, and prune takes it
        labels.setdefault("com.docker.volume.anonymous", "")
    v = e.volumes.create(body.get("Name") or None, labels, body.get("DriverOpts") or {},
                         body.get("Driver") or "local", anonymous=anonymous)
    return json_response(_shape(v), status=201)


async def inspect(request: web.Request) -> web.StreamResponse:
    return json_response(_shape(engine_of(request).volumes.inspect(request.match_info["name"])))


async def remove(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    force = request.query.get("force", "") in ("1", "true")
    e.volumes.remove(request.match_info["name"], e.containers.volumes_in_use(), force)
    return web.Response(status=204)


async def prune(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    f = filters(request)
    everything = f.get("all", ["false"])[0] in ("1", "true")
    used = e.containers.volumes_in_use()
    deleted = []
    for v in e.volumes.all():
        if v["Name"] in used or not (everything or v["Anonymous"]):
            continue
        labels = v.get("Labels") or {}
        assert isinstance(labels, dict)
        if "label" in f and not all(_label_is(labels, w) for w in f["label"]):
            continue
        if "label!" in f and any(_label_is(labels, w) for w in f["label!"]):
            continue
        e.volumes.remove(str(v["Name"]), used)
        deleted.append(v["Name"])
    return json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": 0})


def _label_is(labels: dict[str, str], want: str) -> bool:
    k, eq, v = want.partition("=")
    return k in labels and (not eq or labels[k] == v)


ROUTES = [
    ("GET", "/volumes", list_),
    ("POST", "/volumes/create", create),
    ("POST", "/volumes/prune", prune),
    ("GET", "/volumes/{name}", inspect),
    ("DELETE", "/volumes/{name}", remove),
]
