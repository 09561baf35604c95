"""pull() against a registry played by a test server: the platform picked out of an
index (attestations skipped), a layer download cut off and resumed with Range, digests
checked (a wrong blob is refused and stored nowhere)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from matou.engine.pull import pull
from matou.errors import MatouError
from matou.images.setup import open_store
from matou.oci import image as oci


def _d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(text: str) -> tuple[bytes, bytes]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        data = text.encode() * 20000
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return raw.getvalue(), gzip.compress(raw.getvalue(), 1)


def _image(arch: str, text: str) -> dict[str, bytes]:
    raw, gz = _layer(text)
    config = json.dumps({"architecture": arch, "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [_d(raw)]},
                         "config": {"Cmd": ["sh"]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.OCI_CONFIG, "digest": _d(config), "size": len(config)},
        "layers": [{"mediaType": oci.OCI_LAYER_GZIP, "digest": _d(gz), "size": len(gz)}]
    }).encode()
    return {"manifest": manifest, "config": config, "layer": gz}


class FakeRegistry:
    def __init__(self) -> None:
        self.arm = _image("arm64", "arm")
        self.amd = _image("amd64", "amd")
        attestation = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                                  "config": {"mediaType": oci.OCI_CONFIG,
                                             "digest": _d(b"{}"), "size": 2},
                                  "layers": []}).encode()
        self.index = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
            {"mediaType": oci.OCI_MANIFEST, "digest": _d(self.arm["manifest"]),
             "size": len(self.arm["manifest"]),
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": oci.OCI_MANIFEST, "digest": _d(attestation), "size": len(attestation),
             "platform": {"architecture": "unknown", "os": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
            {"mediaType": oci.OCI_MANIFEST, "digest": _d(self.amd["manifest"]),
             "size": len(self.amd["manifest"]),
             "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
        self.manifests = {_d(m): m for m in (self.arm["manifest"], self.amd["manifest"],
                                             attestation)}
        self.blobs = {_d(b): b for img in (self.arm, self.amd)
                      for b in (img["config"], img["layer"])}
        self.cut_first = True
        self.ranges: list[str] = []
        self.corrupt = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/", self.base)
        app.router.add_get("/v2/{name:.+}/manifests/{ref}", self.manifest)
        app.router.add_get("/v2/{name:.+}/blobs/{digest}", self.blob)
        return app

    async def base(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def manifest(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        data = self.index if ref == "latest" else self.manifests.get(ref)
        if data is None:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        mt = json.loads(data)["mediaType"]
        return web.Response(body=data, headers={"Content-Type": mt,
                                                "Docker-Content-Digest": _d(data)})

    async def blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        data = self.blobs[digest]
        if digest == self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 1])
        rng = request.headers.get("Range")
        if rng:
            self.ranges.append(rng)
            start = int(rng.split("=")[1].rstrip("-"))
            return web.Response(status=206, body=data[start:], headers={
                "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await resp.prepare(request)
        if self.cut_first and json.loads(self.amd["manifest"])["layers"][0]["digest"] == digest:
            self.cut_first = False
            await resp.write(data[: len(data) // 2])
            assert request.transport is not None
            request.transport.close()  # the connection drops halfway
            return resp
        await resp.write(data)
        return resp


async def _pull(tmp_path: Path, fake: FakeRegistry) -> tuple[Any, str, list[dict[str, Any]]]:
    store = open_store(str(tmp_path / "store"), "native")
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    msgs: list[dict[str, Any]] = []

    async def emit(m: dict[str, Any]) -> None:
        msgs.append(m)

    try:
        image_id = await pull(store, f"127.0.0.1:{server.port}/app:latest", emit,
                              want=oci.Platform("linux", "amd64"))
    finally:
        await server.close()
    return store, image_id, msgs


async def test_platform_selected_and_download_resumed(tmp_path: Path) -> None:
    fake = FakeRegistry()
    store, image_id, msgs = await _pull(tmp_path, fake)
    assert image_id == _d(fake.amd["config"])  # amd64, not the first entry, not the attestation
    assert fake.ranges and fake.ranges[0].startswith("bytes=")  # resumed, not started over
    assert any(m.get("status") == "Pull complete" for m in msgs)
    assert str(store.get(image_id).id) == image_id


async def test_a_wrong_blob_is_refused_and_not_stored(tmp_path: Path) -> None:
    fake = FakeRegistry()
    fake.cut_first = False
    layer = json.loads(fake.amd["manifest"])["layers"][0]["digest"]
    fake.corrupt = layer
    with pytest.raises(MatouError, match="digest"):
        await _pull(tmp_path, fake)
    store = open_store(str(tmp_path / "store"), "native")
    from matou.oci.digest import Digest

    assert not store.content.exists(Digest.parse(layer))
    assert store.images() == []


async def test_docker_hub_images_come_from_a_mirror(tmp_path: Path) -> None:
    """`--registry-mirror`: a Docker Hub reference is asked of the mirror (which answers:
    the test never falls through to Docker Hub itself)."""
    fake = FakeRegistry()
    fake.cut_first = False
    store = open_store(str(tmp_path / "store"), "native")
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        async def emit(m: dict[str, Any]) -> None:
            pass

        image_id = await pull(store, "app:latest", emit, want=oci.Platform("linux", "amd64"),
                              mirrors=(f"http://127.0.0.1:{server.port}",))
    finally:
        await server.close()
    assert image_id == _d(fake.amd["config"])
    assert str(store.get("docker.io/library/app:latest").id) == image_id
