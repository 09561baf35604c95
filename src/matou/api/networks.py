"""Network endpoints, and the swarm endpoints a daemon outside any swarm answers with 503."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from matou.api.server import engine_of, filters, json_body, json_response
from matou.engine.networks import PREDEFINED
from matou.errors import InvalidArgument


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def _selected(e: Any, rec: dict[str, Any], f: dict[str, list[str]]) -> bool:
    if "name" in f and not any(n in rec["Name"] for n in f["name"]):
        return False
    if "id" in f and not any(rec["Id"].startswith(i) for i in f["id"]):
        return False
    if "driver" in f and rec["Driver"] not in f["driver"]:
        return False
    if "scope" in f and rec["Scope"] not in f["scope"]:
        return False
    if "label" in f and not _labels_match(rec.get("Labels") or {}, f["label"]):
        return False
    if "type" in f:
        kind = "builtin" if rec["Name"] in PREDEFINED else "custom"
        if kind not in f["type"]:
            return False
    if "dangling" in f:
        dangling = rec["Name"] not in PREDEFINED and not e.networks.users_of(rec)
        if dangling != (f["dangling"][0] in ("1", "true")):
            return False
    return True


async def list_(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    f = filters(request)
    return json_response([e.networks.inspect(r) for r in e.networks.all()
                          if _selected(e, r, f)])


async def inspect(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    return json_response(e.networks.inspect(e.networks.get(request.match_info["id"])))


async def create(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidArgument("network config must be a JSON object")
    rec = await e.networks.create(body)
    return json_response({"Id": rec["Id"], "Warning": ""}, status=201)


async def remove(request: web.Request) -> web.StreamResponse:
    await engine_of(request).networks.remove(request.match_info["id"])
    return web.Response(status=204)


async def _container_body(request: web.Request) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
        raise InvalidArgument("Container is required")
    return body


async def connect(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    body = await _container_body(request)
    c = e.containers.get(body["Container"])
    conf = body.get("EndpointConfig") or {}
    if not isinstance(conf, dict):
        raise InvalidArgument("EndpointConfig must be an object")
    await e.networks.attach(request.match_info["id"], c, conf)
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    body = await _container_body(request)
    c = e.containers.get(body["Container"])
    await e.networks.detach(request.match_info["id"], c, bool(body.get("Force")))
    return web.Response(status=200)


async def prune(request: web.Request) -> web.StreamResponse:
    e = engine_of(request)
    f = filters(request)
    if set(f) - {"label", "label!", "until"}:
        raise InvalidArgument(f"invalid filter {next(iter(set(f) - {'label', 'until'}))!r}")

    def keep(rec: dict[str, Any]) -> bool:
        labels = rec.get("Labels") or {}
        if "label" in f and not _labels_match(labels, f["label"]):
            return True
        return "label!" in f and _labels_match(labels, f["label!"])

    gone = await e.networks.prune(keep)
    return json_response({"NetworksDeleted": gone or None})


async def not_a_swarm(request: web.Request) -> web.StreamResponse:
    leave = request.path.rstrip("/").endswith("/swarm/leave")
    msg = ("This node is not part of a swarm" if leave else
           "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm "
           "join\" to connect this node to swarm and try again.")
    return json_response({"message": msg}, status=503)


ROUTES = [
    ("GET", "/networks", list_),
    ("POST", "/networks/create", create),
    ("POST", "/networks/prune", prune),
    ("GET", "/networks/{id}", inspect),
    ("DELETE", "/networks/{id}", remove),
    ("POST", "/networks/{id}/connect", connect),
    ("POST", "/networks/{id}/disconnect", disconnect),
    *[(m, p, not_a_swarm) for m, p in (
        ("GET", "/swarm"), ("POST", "/swarm/init"), ("POST", "/swarm/join"),
        ("POST", "/swarm/leave"), ("POST", "/swarm/update"), ("GET", "/swarm/unlockkey"),
        ("POST", "/swarm/unlock"), ("GET", "/nodes"), ("GET", "/services"),
        ("POST", "/services/create"), ("GET", "/tasks"), ("GET", "/secrets"),
        ("POST", "/secrets/create"), ("GET", "/configs"), ("POST", "/configs/create"))],
]
