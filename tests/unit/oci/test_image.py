from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from matou.errors import InvalidArgument, NotFound
from matou.oci import image as oci
from matou.oci.digest import Digest, sha256_bytes
from matou.oci.image import (
    Descriptor,
    Index,
    Manifest,
    Platform,
    chain_ids,
    config_to_json,
    default_platform,
    descriptor,
    index_to_json,
    manifest_to_json,
    parse_config,
    parse_manifest_or_index,
    platform_matches,
    select_manifest,
)


def dig(label: str) -> str:
    return str(sha256_bytes(label.encode()))


# hello-world's linux/amd64 manifest as Docker Hub serves it, byte for byte.
HELLO_MANIFEST = b"""{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1470,
      "digest": "sha256:feb5d9fea6a5e9606aa995e879d862b825965ba48de054caab5ef356dc6b3412"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 2479,
         "digest": "sha256:2db29710123e3e53a794f2694094b9b4338aa9ee5c40b930cb8063a1be392c54"
      }
   ]
}"""

# A Docker Hub manifest list, byte for byte as distribution writes one.
BUSYBOX_LIST = f"""{{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
   "manifests": [
      {{
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 527,
         "digest": "{dig("amd64")}",
         "platform": {{
            "architecture": "amd64",
            "os": "linux"
         }}
      }},
      {{
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 527,
         "digest": "{dig("arm-v6")}",
         "platform": {{
            "architecture": "arm",
            "os": "linux",
            "variant": "v6"
         }}
      }},
      {{
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 527,
         "digest": "{dig("arm-v7")}",
         "platform": {{
            "architecture": "arm",
            "os": "linux",
            "variant": "v7"
         }}
      }},
      {{
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 527,
         "digest": "{dig("arm64-v8")}",
         "platform": {{
            "architecture": "arm64",
            "os": "linux",
            "variant": "v8"
         }}
      }},
      {{
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "size": 1111,
         "digest": "{dig("windows")}",
         "platform": {{
            "architecture": "amd64",
            "os": "windows",
            "os.version": "10.0.17763.5936"
         }}
      }}
   ]
}}""".encode()

# BuildKit's output for `docker buildx build --platform linux/arm64,linux/amd64 --push`:
# an OCI index whose provenance attestations sit beside the images.
BUILDKIT_INDEX = json.dumps({
    "schemaVersion": 2,
    "mediaType": oci.OCI_INDEX,
    "manifests": [
        {"mediaType": oci.OCI_MANIFEST, "digest": dig("arm64"), "size": 673,
         "platform": {"architecture": "arm64", "os": "linux"}},
        {"mediaType": oci.OCI_MANIFEST, "digest": dig("amd64"), "size": 673,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": oci.OCI_MANIFEST, "digest": dig("att-arm64"), "size": 566,
         "annotations": {"vnd.docker.reference.digest": dig("arm64"),
                         "vnd.docker.reference.type": "attestation-manifest"},
         "platform": {"architecture": "unknown", "os": "unknown"}},
        {"mediaType": oci.OCI_MANIFEST, "digest": dig("att-amd64"), "size": 566,
         "annotations": {"vnd.docker.reference.digest": dig("amd64"),
                         "vnd.docker.reference.type": "attestation-manifest"},
         "platform": {"architecture": "unknown", "os": "unknown"}},
    ],
}, indent=2).encode()

EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# An OCI 1.1 artifact (a signature) referring to an image through "subject".
ARTIFACT = json.dumps({
    "schemaVersion": 2,
    "mediaType": oci.OCI_MANIFEST,
    "artifactType": "application/vnd.dev.cosign.simplesigning.v1+json",
    "config": {"mediaType": oci.OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2},
    "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "digest": dig("payload"), "size": 242,
                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ&<>"}}],
    "subject": {"mediaType": oci.OCI_MANIFEST, "digest": dig("amd64"), "size": 673},
    "annotations": {"org.opencontainers.image.created": "2024-05-01T10:00:00Z"},
}).encode()

BUSYBOX_CONFIG = (
    b'{"architecture":"amd64","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:'
    b'/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],"WorkingDir":"/","ArgsEscaped":true,'
    b'"OnBuild":null},"created":"2024-09-26T21:31:42Z","history":[{"created":'
    b'"2024-09-26T21:31:42Z","created_by":"BusyBox 1.37.0 (glibc), Debian 12"},{"created":'
    b'"2024-09-26T21:31:42Z","created_by":"CMD [\\"sh\\"]","empty_layer":true}],"os":"linux",'
    b'"rootfs":{"type":"layers","diff_ids":["sha256:5bfc9a5ed2e0b1a0a3a84a72e1e2f3a4b6c9d2e8f7'
    b'a1b3c5d7e9f0a2b4c6d8e0"]}}'
)


def test_docker_manifest() -> None:
    m = parse_manifest_or_index(HELLO_MANIFEST)
    assert isinstance(m, Manifest)
    assert m.media_type == oci.DOCKER_MANIFEST and m.schema_version == 2
    assert m.config == descriptor(
        oci.DOCKER_CONFIG,
        Digest.parse("sha256:feb5d9fea6a5e9606aa995e879d862b825965ba48de054caab5ef356dc6b3412"),
        1470)
    assert [d.media_type for d in m.layers] == [oci.DOCKER_LAYER]
    assert m.layers[0].size == 2479
    assert m.subject is None and m.artifact_type == "" and m.annotations == {}
    # Written back, it is the very bytes Docker Hub serves.
    assert manifest_to_json(m) == HELLO_MANIFEST


def test_docker_manifest_list() -> None:
    i = parse_manifest_or_index(BUSYBOX_LIST, oci.DOCKER_MANIFEST_LIST)
    assert isinstance(i, Index)
    assert i.media_type == oci.DOCKER_MANIFEST_LIST
    assert [str(d.platform) for d in i.manifests] == [
        "linux/amd64", "linux/arm/v6", "linux/arm/v7", "linux/arm64/v8", "windows/amd64"]
    assert i.manifests[4].platform == Platform("windows", "amd64", os_version="10.0.17763.5936")
    assert index_to_json(i) == BUSYBOX_LIST


def test_oci_artifact_with_subject() -> None:
    m = parse_manifest_or_index(ARTIFACT, oci.OCI_MANIFEST + "; charset=utf-8")
    assert isinstance(m, Manifest)
    assert m.artifact_type == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert m.config.media_type == oci.OCI_EMPTY
    assert m.config.digest == sha256_bytes(b"{}")
    assert m.subject is not None and str(m.subject.digest) == dig("amd64")
    assert m.layers[0].annotations == {"dev.cosignproject.cosign/signature": "MEUCIQ&<>"}
    assert m.annotations == {"org.opencontainers.image.created": "2024-05-01T10:00:00Z"}
    out = manifest_to_json(m)
    assert b"MEUCIQ\\u0026\\u003c\\u003e" in out  # escaped as Go's encoding/json does
    assert parse_manifest_or_index(out) == m


def test_index_with_attestations_round_trips() -> None:
    i = parse_manifest_or_index(BUILDKIT_INDEX)
    assert isinstance(i, Index) and len(i.manifests) == 4
    assert i.manifests[2].platform == Platform("unknown", "unknown")
    assert parse_manifest_or_index(index_to_json(i)) == i


@pytest.mark.parametrize("hint", [None, oci.OCI_MANIFEST, oci.OCI_INDEX, oci.DOCKER_MANIFEST])
@pytest.mark.parametrize("media_type", [None, oci.OCI_MANIFEST, oci.OCI_INDEX])
def test_cve_2021_41190_manifest_and_index_at_once(hint: str | None,
                                                   media_type: str | None) -> None:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "config": {"mediaType": oci.OCI_CONFIG, "digest": dig("c"), "size": 2},
        "layers": [],
        "manifests": [{"mediaType": oci.OCI_MANIFEST, "digest": dig("m"), "size": 2}],
    }
    if media_type:
        doc["mediaType"] = media_type
    with pytest.raises(InvalidArgument, match="ambiguous manifest or index"):
        parse_manifest_or_index(json.dumps(doc).encode(), hint)


@pytest.mark.parametrize(("doc", "hint", "message"), [
    ({"mediaType": oci.OCI_INDEX, "manifests": [], "config": {}}, None, "ambiguous"),
    ({"mediaType": oci.OCI_INDEX, "manifests": [], "layers": []}, None, "ambiguous"),
    ({"mediaType": oci.OCI_INDEX, "layers": []}, None, "has 'layers' or 'config'"),
    ({"mediaType": oci.OCI_MANIFEST, "manifests": []}, None, "has 'manifests'"),
    ({"mediaType": oci.DOCKER_MANIFEST, "config": {}, "layers": []}, oci.OCI_MANIFEST,
     "mediaType: 'application/vnd.docker.distribution.manifest.v2+json' contradicts the "
     "expected 'application/vnd.oci.image.manifest.v1+json'"),
    ({"mediaType": oci.OCI_MANIFEST, "config": {}, "layers": []}, oci.OCI_INDEX, "contradicts"),
    ({"mediaType": "application/vnd.oci.artifact.manifest.v1+json", "blobs": []}, None,
     "unsupported media type 'application/vnd.oci.artifact.manifest.v1+json'"),
    ({}, None, "no mediaType, and neither 'manifests' nor 'config'"),
    ({"mediaType": oci.OCI_MANIFEST, "layers": []}, None, "manifest: config: missing"),
    ({"mediaType": oci.OCI_INDEX}, None, "manifest: manifests: missing"),
])
def test_rejects_contradictory_documents(doc: dict[str, Any], hint: str | None,
                                         message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_manifest_or_index(json.dumps({"schemaVersion": 2, **doc}).encode(), hint)
    assert message in str(e.value)


def test_media_type_from_hint_or_shape() -> None:
    bare = json.loads(BUSYBOX_LIST)
    del bare["mediaType"]
    data = json.dumps(bare).encode()
    assert parse_manifest_or_index(data, oci.DOCKER_MANIFEST_LIST).media_type == (
        oci.DOCKER_MANIFEST_LIST)
    assert parse_manifest_or_index(data).media_type == oci.OCI_INDEX
    assert parse_manifest_or_index(data, "application/json").media_type == oci.OCI_INDEX
    assert parse_manifest_or_index(HELLO_MANIFEST, "application/octet-stream").media_type == (
        oci.DOCKER_MANIFEST)
    bare = json.loads(ARTIFACT)
    del bare["mediaType"]
    assert isinstance(parse_manifest_or_index(json.dumps(bare).encode()), Manifest)


@pytest.mark.parametrize(("data", "message"), [
    (b"{", "manifest: malformed JSON: "),
    (b"\xff", "manifest: malformed JSON: "),
    (b"[]", "manifest: top level: expected object"),
    (b'{"mediaType": "x"}', "manifest: schemaVersion: missing"),
    (b'{"schemaVersion": 1, "name": "library/busybox", "fsLayers": []}',
     "manifest: schemaVersion: unsupported schema version 1, must be 2"),
    (b'{"schemaVersion": "2", "manifests": []}',
     'manifest: schemaVersion: unsupported schema version "2"'),
    (b'{"schemaVersion": true, "manifests": []}',
     "manifest: schemaVersion: unsupported schema version true"),
    (b'{"schemaVersion": 2.0, "manifests": []}',
     "manifest: schemaVersion: unsupported schema version 2.0"),
])
def test_rejects_malformed(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_manifest_or_index(data)
    assert str(e.value).startswith(message)


def _with_layer(**layer: Any) -> bytes:
    doc = json.loads(HELLO_MANIFEST)
    doc["layers"].append({"mediaType": oci.DOCKER_LAYER, "digest": dig("l"), "size": 1, **layer})
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("layer", "message"), [
    ({"size": -1}, "manifest: layers[1].size: expected non-negative integer"),
    ({"size": True}, "manifest: layers[1].size: expected non-negative integer"),
    ({"size": 1.5}, "manifest: layers[1].size: expected non-negative integer"),
    ({"size": None}, "manifest: layers[1].size: missing"),
    ({"digest": "sha256:xyz"}, "manifest: layers[1].digest: invalid digest 'sha256:xyz'"),
    ({"digest": 7}, "manifest: layers[1].digest: expected string"),
    ({"mediaType": ""}, "manifest: layers[1].mediaType: missing"),
    ({"annotations": {"a": 1}}, "manifest: layers[1].annotations: expected object of strings"),
    ({"urls": "https://x"}, "manifest: layers[1].urls: expected array of strings"),
    ({"platform": {"os": "linux"}}, "manifest: layers[1].platform.architecture: missing"),
])
def test_descriptor_validation(layer: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_manifest_or_index(_with_layer(**layer))
    assert str(e.value).startswith(message)


def test_layers_must_be_descriptors() -> None:
    doc = json.loads(HELLO_MANIFEST)
    doc["layers"] = {"0": doc["layers"][0]}
    with pytest.raises(InvalidArgument, match=r"^manifest: layers: expected array$"):
        parse_manifest_or_index(json.dumps(doc).encode())
    doc["layers"] = ["sha256:abc"]
    with pytest.raises(InvalidArgument, match=r"^manifest: layers\[0\]: expected object$"):
        parse_manifest_or_index(json.dumps(doc).encode())


def test_descriptor_to_json() -> None:
    notes = {"org.opencontainers.image.title": "x"}
    d = descriptor(oci.OCI_LAYER_GZIP, sha256_bytes(b"x"), 5, notes)
    notes["changed"] = "later"  # the record keeps its own copy
    assert d.annotations == {"org.opencontainers.image.title": "x"}
    assert d.to_json() == {"mediaType": oci.OCI_LAYER_GZIP, "digest": str(sha256_bytes(b"x")),
                           "size": 5, "annotations": {"org.opencontainers.image.title": "x"}}
    full = Descriptor(oci.OCI_MANIFEST, sha256_bytes(b"m"), 9, {},
                      Platform("linux", "arm64", "v8", os_features=("f",)),
                      ("https://example.com/m",), "application/x")
    assert full.to_json() == {
        "mediaType": oci.OCI_MANIFEST, "digest": str(sha256_bytes(b"m")), "size": 9,
        "urls": ["https://example.com/m"],
        "platform": {"architecture": "arm64", "os": "linux", "os.features": ["f"],
                     "variant": "v8"},
        "artifactType": "application/x"}
    assert list(full.to_json())[:3] == ["mediaType", "digest", "size"]


def test_parse_config() -> None:
    c = parse_config(BUSYBOX_CONFIG)
    assert (c.architecture, c.os, c.variant) == ("amd64", "linux", "")
    assert c.config["Cmd"] == ["sh"] and c.config["WorkingDir"] == "/"
    assert c.rootfs_diff_ids == (Digest.parse(
        "sha256:5bfc9a5ed2e0b1a0a3a84a72e1e2f3a4b6c9d2e8f7a1b3c5d7e9f0a2b4c6d8e0"),)
    assert len(c.history) == 2 and c.history[1]["empty_layer"] is True
    assert c.created == "2024-09-26T21:31:42Z" and c.author == ""
    assert c.raw["rootfs"]["type"] == "layers"
    # Written back compactly, key order kept, the bytes (and so the image ID) survive.
    assert config_to_json(c.raw) == BUSYBOX_CONFIG


def test_config_to_json_is_compact_and_go_escaped() -> None:
    raw = {"config": {"Labels": {"url": "https://x/?a=1&b=<2>", "name": "caf\u00e9"}}}
    assert config_to_json(raw) == (
        b'{"config":{"Labels":{"url":"https://x/?a=1\\u0026b=\\u003c2\\u003e",'
        b'"name":"caf\xc3\xa9"}}}')


def test_config_without_runtime_config() -> None:
    c = parse_config(b'{"architecture":"arm64","variant":"v8","os":"linux","config":null,'
                     b'"rootfs":{"type":"layers","diff_ids":[]}}')
    assert c.config == {} and c.rootfs_diff_ids == () and c.variant == "v8"


@pytest.mark.parametrize(("data", "message"), [
    (b"nope", "image config: malformed JSON: "),
    (b'{"os":"linux"}', "image config: rootfs: missing"),
    (b'{"rootfs":{"diff_ids":[]}}', "image config: rootfs.type: missing"),
    (b'{"rootfs":{"type":"tarsum","diff_ids":[]}}',
     "image config: rootfs.type: unsupported type 'tarsum', must be 'layers'"),
    (b'{"rootfs":{"type":"layers","diff_ids":"sha256:x"}}',
     "image config: rootfs.diff_ids: expected array of digests"),
    (b'{"rootfs":{"type":"layers","diff_ids":["sha256:x"]}}',
     "image config: rootfs.diff_ids[0]: invalid digest 'sha256:x'"),
    (b'{"rootfs":{"type":"layers","diff_ids":[5]}}',
     "image config: rootfs.diff_ids[0]: invalid digest '5'"),
    (b'{"rootfs":{"type":"layers"},"config":[]}', "image config: config: expected object"),
    (b'{"rootfs":{"type":"layers"},"history":[1]}', "image config: history[0]: expected object"),
    (b'{"rootfs":{"type":"layers"},"os":7}', "image config: os: expected string"),
])
def test_config_rejects(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_config(data)
    assert str(e.value).startswith(message)


def test_chain_ids() -> None:
    d0, d1, d2 = sha256_bytes(b"layer0"), sha256_bytes(b"layer1"), sha256_bytes(b"layer2")
    assert chain_ids([]) == []
    assert chain_ids([d0]) == [d0]
    c1 = Digest("sha256", hashlib.sha256(f"sha256:{d0.hex} sha256:{d1.hex}".encode()).hexdigest())
    c2 = Digest("sha256", hashlib.sha256(f"sha256:{c1.hex} sha256:{d2.hex}".encode()).hexdigest())
    assert chain_ids((d0, d1, d2)) == [d0, c1, c2]


def _index(*entries: tuple[str, Platform | None, dict[str, str]]) -> Index:
    return Index(oci.OCI_INDEX, tuple(
        descriptor(oci.OCI_MANIFEST, sha256_bytes(label.encode()), 1, notes, platform)
        for label, platform, notes in entries), {}, None, 2)


def _picked(index: Index, want: Platform) -> str:
    chosen = select_manifest(index, want)
    for label in ("amd64", "arm64", "arm64-v8", "arm-v5", "arm-v6", "arm-v7", "386", "bare",
                  "att", "amd64-v2", "amd64-v3", "windows"):
        if chosen.digest == sha256_bytes(label.encode()):
            return label
    raise AssertionError(chosen)


AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")


def test_select_from_real_lists() -> None:
    buildkit = parse_manifest_or_index(BUILDKIT_INDEX)
    assert isinstance(buildkit, Index)
    assert select_manifest(buildkit, AMD64).digest == Digest.parse(dig("amd64"))
    # BuildKit writes arm64 without a variant; v8 is arm64's default.
    assert select_manifest(buildkit, default_platform("aarch64")).digest == Digest.parse(
        dig("arm64"))
    hub = parse_manifest_or_index(BUSYBOX_LIST)
    assert isinstance(hub, Index)
    assert select_manifest(hub, Platform("linux", "arm64")).digest == Digest.parse(
        dig("arm64-v8"))
    assert select_manifest(hub, Platform("linux", "arm", "v7")).digest == Digest.parse(
        dig("arm-v7"))
    assert select_manifest(hub, Platform("windows", "amd64")).digest == Digest.parse(
        dig("windows"))
    with pytest.raises(NotFound) as e:
        select_manifest(hub, Platform("linux", "s390x"))
    assert str(e.value) == "no matching manifest for linux/s390x in the manifest list entries"


def test_select_skips_attestations() -> None:
    att = {"vnd.docker.reference.type": "attestation-manifest"}
    index = _index(("att", AMD64, att), ("arm64", ARM64, {}),
                   ("att", Platform("unknown", "unknown"), {}))
    with pytest.raises(NotFound) as e:
        select_manifest(index, AMD64)
    assert str(e.value) == "no matching manifest for linux/amd64 in the manifest list entries"
    assert _picked(index, ARM64) == "arm64"


def test_select_prefers_exact_variant() -> None:
    index = _index(("arm-v5", Platform("linux", "arm", "v5"), {}),
                   ("arm-v6", Platform("linux", "arm", "v6"), {}),
                   ("arm-v7", Platform("linux", "arm", "v7"), {}),
                   ("arm64", Platform("linux", "arm64"), {}))
    assert _picked(index, Platform("linux", "arm", "v7")) == "arm-v7"
    assert _picked(index, Platform("linux", "arm", "v6")) == "arm-v6"
    assert _picked(index, Platform("linux", "arm")) == "arm-v7"  # arm's default is v7
    assert _picked(index, ARM64) == "arm64"
    # Without an exact match, the newest variant the host still runs.
    older = _index(("arm-v5", Platform("linux", "arm", "v5"), {}),
                   ("arm-v6", Platform("linux", "arm", "v6"), {}))
    assert _picked(older, Platform("linux", "arm", "v7")) == "arm-v6"
    assert _picked(older, ARM64) == "arm-v6"  # 32-bit arm runs on arm64
    with pytest.raises(NotFound, match="linux/arm/v5 in the manifest list"):
        select_manifest(_index(("arm-v6", Platform("linux", "arm", "v6"), {})),
                        Platform("linux", "arm", "v5"))


def test_select_amd64_levels_and_fallbacks() -> None:
    index = _index(("amd64-v3", Platform("linux", "amd64", "v3"), {}),
                   ("amd64", AMD64, {}),
                   ("amd64-v2", Platform("linux", "amd64", "v2"), {}))
    assert _picked(index, AMD64) == "amd64"
    assert _picked(index, Platform("linux", "amd64", "v2")) == "amd64-v2"
    assert _picked(index, Platform("linux", "amd64", "v4")) == "amd64-v3"
    assert _picked(_index(("386", Platform("linux", "386"), {})), AMD64) == "386"
    # An entry without a platform matches anything, but only as a last resort.
    bare = _index(("bare", None, {}), ("amd64", AMD64, {}))
    assert _picked(bare, AMD64) == "amd64"
    assert _picked(bare, ARM64) == "bare"
    assert _picked(_index(("windows", Platform("windows", "amd64"), {})),
                   Platform("windows", "x86_64")) == "windows"


def test_select_skips_non_manifests() -> None:
    index = Index(oci.OCI_INDEX, (
        descriptor(oci.OCI_LAYER, sha256_bytes(b"amd64"), 1, platform=AMD64),
        descriptor(oci.DOCKER_MANIFEST_LIST, sha256_bytes(b"arm64"), 1, platform=AMD64),
    ), {}, None, 2)
    assert select_manifest(index, AMD64).media_type == oci.DOCKER_MANIFEST_LIST


@pytest.mark.parametrize(("want", "have", "ok"), [
    (ARM64, Platform("linux", "arm64"), True),
    (Platform("linux", "arm64"), Platform("linux", "aarch64", "8"), True),
    (ARM64, Platform("linux", "arm64", "v9"), False),
    (ARM64, Platform("linux", "arm", "v7"), True),
    (AMD64, Platform("linux", "x86_64"), True),
    (AMD64, Platform("linux", "arm64"), False),
    (AMD64, Platform("windows", "amd64"), False),
    (AMD64, Platform("linux", "amd64", "v2"), False),
    (Platform("linux", "arm", "v6"), Platform("linux", "armel"), True),
    (Platform("linux", "arm", "v6"), Platform("linux", "armhf"), False),
])
def test_platform_matches(want: Platform, have: Platform, ok: bool) -> None:
    assert platform_matches(want, have) is ok


@pytest.mark.parametrize(("machine", "platform"), [
    ("x86_64", "linux/amd64"),
    ("aarch64", "linux/arm64/v8"),
    ("armv7l", "linux/arm/v7"),
    ("s390x", "linux/s390x"),
])
def test_default_platform(machine: str, platform: str) -> None:
    assert str(default_platform(machine)) == platform
