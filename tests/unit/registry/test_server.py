"""matou-registry's API on the in-memory driver, through aiohttp's test client: uploads
(monolithic, chunked and out of order, wrong digest), blobs with Range, manifests by tag
and digest (sha256 and sha512), tags and catalog pagination, referrers, deletes, gc."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from matou.registry.server import build_app
from matou.registry.storage import Memory
from matou.registry.store import Store


def sha(data: bytes, alg: str = "sha256") -> str:
    return f"{alg}:{hashlib.new(alg, data).hexdigest()}"


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    store = Store(Memory())
    async with TestClient(TestServer(build_app(store))) as c:
        c.store = store  # type: ignore[attr-defined]
        yield c


async def push_blob(c: TestClient, name: str, data: bytes) -> str:  # type: ignore[type-arg]
    r = await c.post(f"/v2/{name}/blobs/uploads/?digest={sha(data)}", data=data)
    assert r.status == 201, await r.text()
    return sha(data)


def manifest(config: str, layers: list[str], subject: str | None = None,
             artifact: str | None = None) -> bytes:
    doc: dict[str, object] = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                   "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d,
                    "size": 1} for d in layers]}
    if subject:
        doc["subject"] = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "digest": subject, "size": 1}
    if artifact:
        doc["artifactType"] = artifact
    return json.dumps(doc).encode()


async def test_base_and_unknowns(client: TestClient) -> None:  # type: ignore[type-arg]
    assert (await client.get("/v2/")).status == 200
    r = await client.get(f"/v2/a/b/blobs/{sha(b'x')}")
    assert r.status == 404 and (await r.json())["errors"][0]["code"] == "BLOB_UNKNOWN"
    r = await client.get("/v2/UPPER/tags/list")
    assert r.status == 400 and (await r.json())["errors"][0]["code"] == "NAME_INVALID"
    r = await client.get("/v2/nothing/tags/list")
    assert r.status == 404 and (await r.json())["errors"][0]["code"] == "NAME_UNKNOWN"
    r = await client.get("/v2/a/manifests/latest")
    assert (await r.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"


async def test_chunked_upload_in_order_only(client: TestClient) -> None:  # type: ignore[type-arg]
    r = await client.post("/v2/repo/blobs/uploads/")
    assert r.status == 202
    loc = r.headers["Location"]
    r = await client.patch(loc, data=b"hello ", headers={"Content-Range": "0-5"})
    assert r.status == 202 and r.headers["Range"] == "0-5"
    r = await client.patch(loc, data=b"xx", headers={"Content-Range": "3-4"})
    assert r.status == 416  # out of order: refused, nothing appended
    r = await client.get(loc)
    assert r.status == 204 and r.headers["Range"] == "0-5"
    r = await client.patch(loc, data=b"world", headers={"Content-Range": "6-10"})
    assert r.status == 202
    r = await client.put(f"{loc}?digest={sha(b'hello world')}")
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == sha(b"hello world")
    r = await client.get(f"/v2/repo/blobs/{sha(b'hello world')}")
    assert await r.read() == b"hello world"
    r = await client.get(f"/v2/repo/blobs/{sha(b'hello world')}", headers={"Range": "bytes=6-"})
    assert r.status == 206 and await r.read() == b"world"
    assert r.headers["Content-Range"] == "bytes 6-10/11"


async def test_wrong_digest_stores_nothing(client: TestClient) -> None:  # type: ignore[type-arg]
    r = await client.post(f"/v2/repo/blobs/uploads/?digest={sha(b'other')}", data=b"data")
    assert r.status == 400 and (await r.json())["errors"][0]["code"] == "DIGEST_INVALID"
    store: Store = client.store  # type: ignore[attr-defined]
    assert not store.d.list("blobs") and not store.d.list("_uploads")


async def test_manifests_tags_referrers(client: TestClient) -> None:  # type: ignore[type-arg]
    cfg = await push_blob(client, "app", b"{}")
    layer = await push_blob(client, "app", b"L")
    m = manifest(cfg, [layer])
    ct = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    r = await client.put("/v2/app/manifests/v1", data=m, headers=ct)
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == sha(m)
    r = await client.put(f"/v2/app/manifests/{sha(m, 'sha512')}", data=m, headers=ct)
    assert r.status == 201 and r.headers["Docker-Content-Digest"] == sha(m, "sha512")
    r = await client.get(f"/v2/app/manifests/{sha(m, 'sha512')}")
    assert await r.read() == m and r.headers["Content-Type"] == ct["Content-Type"]
    for t in ("v2", "v3", "a"):
        await client.put(f"/v2/app/manifests/{t}", data=m, headers=ct)
    r = await client.get("/v2/app/tags/list?n=2")
    assert (await r.json())["tags"] == ["a", "v1"] and 'last=v1' in r.headers["Link"]
    r = await client.get("/v2/app/tags/list?n=2&last=v1")
    assert (await r.json())["tags"] == ["v2", "v3"]
    bad = manifest(cfg, [sha(b"never pushed")])
    r = await client.put("/v2/app/manifests/bad", data=bad, headers=ct)
    assert (await r.json())["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    # referrers: an artifact whose subject is m
    art = manifest(cfg, [layer], subject=sha(m), artifact="application/x-sig")
    r = await client.put(f"/v2/app/manifests/{sha(art)}", data=art, headers=ct)
    assert r.status == 201 and r.headers["OCI-Subject"] == sha(m)
    r = await client.get(f"/v2/app/referrers/{sha(m)}")
    found = (await r.json())["manifests"]
    assert [d["digest"] for d in found] == [sha(art)]
    assert found[0]["artifactType"] == "application/x-sig"
    r = await client.get(f"/v2/app/referrers/{sha(m)}?artifactType=application/other")
    assert (await r.json())["manifests"] == [] and r.headers["OCI-Filters-Applied"]
    # deletes: the referrer, a tag, a manifest with its tags
    assert (await client.delete(f"/v2/app/manifests/{sha(art)}")).status == 202
    r = await client.get(f"/v2/app/referrers/{sha(m)}")
    assert (await r.json())["manifests"] == []
    assert (await client.delete("/v2/app/manifests/a")).status == 202
    assert (await client.delete(f"/v2/app/manifests/{sha(m)}")).status == 202
    r = await client.get("/v2/app/manifests/v1")
    assert r.status == 404
    r = await client.get("/v2/_catalog")
    assert (await r.json())["repositories"] == ["app"]


async def test_mount_and_gc(client: TestClient) -> None:  # type: ignore[type-arg]
    d = await push_blob(client, "one", b"shared")
    r = await client.post(f"/v2/two/blobs/uploads/?mount={d}&from=one")
    assert r.status == 201
    r = await client.post(f"/v2/three/blobs/uploads/?mount={d}&from=nosuch")
    assert r.status == 202  # not mountable from there: an upload starts instead
    assert (await client.head(f"/v2/two/blobs/{d}")).status == 200
    for name in ("one", "two"):
        assert (await client.delete(f"/v2/{name}/blobs/{d}")).status == 202
    store: Store = client.store  # type: ignore[attr-defined]
    assert store.gc() == [d]
    assert store.gc() == []


async def test_mount_needs_read_access_to_the_source(tmp_path: object) -> None:
    """With token auth, a mount from a repository the token may not pull is no mount:
    the registry starts an ordinary upload instead (the blob stays unreadable)."""
    import base64
    from pathlib import Path

    import bcrypt

    htpasswd = Path(str(tmp_path)) / "htpasswd"
    htpasswd.write_text("u:" + bcrypt.hashpw(b"p", bcrypt.gensalt(4)).decode() + "\n")
    store = Store(Memory())
    async with TestClient(TestServer(build_app(store, str(htpasswd)))) as c:
        basic = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}

        async def token(*scopes: str) -> dict[str, str]:
            r = await c.get("/token", params=[("service", "matou-registry")] +
                            [("scope", s) for s in scopes], headers=basic)
            return {"Authorization": f"Bearer {(await r.json())['token']}"}

        data = b"secret layer"
        one = await token("repository:one:push,pull")
        r = await c.post(f"/v2/one/blobs/uploads/?digest={sha(data)}", data=data, headers=one)
        assert r.status == 201
        mount = f"/v2/two/blobs/uploads/?mount={sha(data)}&from=one"
        r = await c.post(mount, headers=await token("repository:two:push,pull"))
        assert r.status == 202  # may not read `one`: no mount
        r = await c.post(mount, headers=await token("repository:two:push,pull",
                                                    "repository:one:pull"))
        assert r.status == 201
