"""OCI and Docker image records: media types, descriptors, manifests, indexes, configs.

Parsers check types field by field and name the offending path in their errors
(``manifest: layers[1].size: expected non-negative integer``). Content addresses
are of bytes, never of records: whoever has the bytes a digest was computed over
keeps them, and the ``*_to_json`` writers below are only for documents matou
creates itself. Those write what Go's encoding/json writes (UTF-8, ``<>&``
escaped) for the structs Docker uses: manifests and indexes laid out as
distribution's library lays them out for ``docker push`` (3-space indent,
descriptor keys mediaType, size, digest), configs compact as the engine stores them.

Pure: imports only the stdlib and matou.errors (and its sibling oci.digest);
no I/O besides hashlib and json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple, NoReturn

from matou.errors import InvalidArgument, NotFound
from matou.oci.digest import Digest, sha256_bytes

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_UNCOMPRESSED = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES = frozenset({
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
    OCI_LAYER_NONDIST, OCI_LAYER_NONDIST_GZIP, OCI_LAYER_NONDIST_ZSTD,
    DOCKER_LAYER, DOCKER_LAYER_UNCOMPRESSED, DOCKER_FOREIGN_LAYER,
})

# BuildKit marks provenance/SBOM entries of an index this way (with platform unknown/unknown).
ANNOTATION_REFERENCE_TYPE = "vnd.docker.reference.type"
ATTESTATION_MANIFEST = "attestation-manifest"

# What registries and files say when they do not know; a hint of these tells nothing.
_GENERIC_TYPES = frozenset({"", "application/json", "application/octet-stream", "text/plain"})


class Platform(NamedTuple):
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        """``linux/arm64/v8`` or ``linux/amd64``, as Docker's errors print it."""
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out


class Descriptor(NamedTuple):
    """Every field is required (a NamedTuple cannot default a dict); build with ``descriptor``."""

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str]
    platform: Platform | None
    urls: tuple[str, ...]
    artifact_type: str

    def to_json(self) -> dict[str, Any]:
        """OCI camelCase, in the image-spec struct's field order, empty fields left out."""
        out: dict[str, Any] = {
            "mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out


def descriptor(media_type: str, digest: Digest, size: int,
               annotations: dict[str, str] | None = None, platform: Platform | None = None,
               urls: Sequence[str] = (), artifact_type: str = "") -> Descriptor:
    return Descriptor(media_type, digest, size, dict(annotations or {}), platform, tuple(urls),
                      artifact_type)


class Manifest(NamedTuple):
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str]
    subject: Descriptor | None
    artifact_type: str
    schema_version: int


class Index(NamedTuple):
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str]
    subject: Descriptor | None
    schema_version: int


class ImageConfig(NamedTuple):
    """An image config; ``config`` is the runtime part with Docker's CamelCase keys as is."""

    architecture: str
    os: str
    variant: str
    config: dict[str, Any]
    rootfs_diff_ids: tuple[Digest, ...]
    history: tuple[dict[str, Any], ...]
    created: str
    author: str
    raw: dict[str, Any]


class _Reader:
    """Type-checked access to one JSON object, reporting errors by dotted path."""

    def __init__(self, obj: Any, doc: str, path: str) -> None:
        self.doc = doc
        self.path = path
        if not isinstance(obj, dict):
            self.fail("expected object")
        self.obj: dict[str, Any] = obj

    def fail(self, msg: str, key: str | None = None) -> NoReturn:
        where = self.where(key) if key is not None else self.path
        raise InvalidArgument(f"{self.doc}: {where or 'top level'}: {msg}")

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.obj

    def text(self, key: str, required: bool = False) -> str:
        v = self.obj.get(key)
        if v is None:
            if required:
                self.fail("missing", key)
            return ""
        if not isinstance(v, str):
            self.fail("expected string", key)
        return v

    def texts(self, key: str) -> tuple[str, ...]:
        v = self.obj.get(key)
        if v is None:
            return ()
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            self.fail("expected array of strings", key)
        return tuple(v)

    def str_map(self, key: str) -> dict[str, str]:
        v = self.obj.get(key)
        if v is None:
            return {}
        if not isinstance(v, dict) or not all(isinstance(s, str) for s in v.values()):
            self.fail("expected object of strings", key)
        return dict(v)

    def count(self, key: str) -> int:
        v = self.obj.get(key)
        if v is None:
            self.fail("missing", key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            self.fail("expected non-negative integer", key)
        return v

    def digest(self, key: str) -> Digest:
        text = self.text(key, required=True)
        try:
            return Digest.parse(text)
        except InvalidArgument as e:
            raise InvalidArgument(f"{self.doc}: {self.where(key)}: {e}") from e

    def sub(self, key: str) -> _Reader | None:
        v = self.obj.get(key)
        return None if v is None else _Reader(v, self.doc, self.where(key))

    def objs(self, key: str, required: bool = False) -> list[_Reader]:
        v = self.obj.get(key)
        if v is None:
            if required:
                self.fail("missing", key)
            return []
        if not isinstance(v, list):
            self.fail("expected array", key)
        return [_Reader(o, self.doc, f"{self.where(key)}[{i}]") for i, o in enumerate(v)]


def _platform(r: _Reader) -> Platform:
    return Platform(
        os=r.text("os", required=True),
        architecture=r.text("architecture", required=True),
        variant=r.text("variant"),
        os_version=r.text("os.version"),
        os_features=r.texts("os.features"),
    )


def _descriptor(r: _Reader) -> Descriptor:
    media_type = r.text("mediaType", required=True)
    if not media_type:
        r.fail("missing", "mediaType")
    p = r.sub("platform")
    return Descriptor(
        media_type=media_type,
        digest=r.digest("digest"),
        size=r.count("size"),
        annotations=r.str_map("annotations"),
        platform=_platform(p) if p is not None else None,
        urls=r.texts("urls"),
        artifact_type=r.text("artifactType"),
    )


def parse_descriptor(obj: Any, doc: str = "descriptor") -> Descriptor:
    """Parse one decoded descriptor object (``doc`` names it in errors)."""
    return _descriptor(_Reader(obj, doc, ""))


def _load(data: bytes, doc: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{doc}: malformed JSON: {e}") from e


def parse_manifest_or_index(data: bytes, media_type_hint: str | None = None) -> Manifest | Index:
    """Parse a manifest or an index, deciding by its mediaType, else the hint, else its shape.

    ``media_type_hint`` is what the bytes arrived as (a registry's Content-Type, a
    descriptor's mediaType); parameters after ";" and generic types are ignored.
    """
    r = _Reader(_load(data, "manifest"), "manifest", "")
    if r.has("manifests") and (r.has("layers") or r.has("config")):
        # CVE-2021-41190: a document that parses as both a manifest and an index lets
        # two readers of the same digest see different content; the image spec now
        # forbids it and so do containerd and distribution.
        r.fail("has both 'manifests' and 'layers' or 'config': ambiguous manifest or index")
    if "schemaVersion" not in r.obj:
        r.fail("missing", "schemaVersion")
    version = r.obj["schemaVersion"]
    if not isinstance(version, int) or isinstance(version, bool) or version != 2:
        r.fail(f"unsupported schema version {json.dumps(version)}, must be 2", "schemaVersion")
    body_type = r.text("mediaType")
    hint = (media_type_hint or "").partition(";")[0].strip()
    if hint in _GENERIC_TYPES:
        hint = ""
    if body_type and hint and body_type != hint:
        r.fail(f"'{body_type}' contradicts the expected '{hint}'", "mediaType")
    media_type = body_type or hint
    if not media_type:
        if r.has("manifests"):
            media_type = OCI_INDEX
        elif r.has("config") or r.has("layers"):
            media_type = OCI_MANIFEST
        else:
            r.fail("no mediaType, and neither 'manifests' nor 'config'")
    if media_type in INDEX_TYPES:
        if r.has("layers") or r.has("config"):
            r.fail(f"'{media_type}' has 'layers' or 'config'", "mediaType")
        s = r.sub("subject")
        return Index(
            media_type=media_type,
            manifests=tuple(_descriptor(m) for m in r.objs("manifests", required=True)),
            annotations=r.str_map("annotations"),
            subject=_descriptor(s) if s is not None else None,
            schema_version=2,
        )
    if media_type in MANIFEST_TYPES:
        if r.has("manifests"):
            r.fail(f"'{media_type}' has 'manifests'", "mediaType")
        config = r.sub("config")
        if config is None:
            r.fail("missing", "config")
        s = r.sub("subject")
        return Manifest(
            media_type=media_type,
            config=_descriptor(config),
            layers=tuple(_descriptor(m) for m in r.objs("layers", required=True)),
            annotations=r.str_map("annotations"),
            subject=_descriptor(s) if s is not None else None,
            artifact_type=r.text("artifactType"),
            schema_version=2,
        )
    r.fail(f"unsupported media type '{media_type}'", "mediaType")


def _go_json(obj: Any, indent: int | None) -> bytes:
    """JSON as Go's encoding/json writes it: UTF-8, HTML characters and U+2028/9 escaped."""
    if indent is None:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(obj, ensure_ascii=False, indent=indent)
    # These characters can only occur inside strings, so replacing them is safe.
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text.encode()


def _stored(d: Descriptor) -> dict[str, Any]:
    """A descriptor in distribution's struct order (size before digest)."""
    j = d.to_json()
    out = {"mediaType": j.pop("mediaType"), "size": j.pop("size"), "digest": j.pop("digest")}
    out.update(j)
    return out


def manifest_to_json(m: Manifest) -> bytes:
    """The bytes to store for a manifest matou creates, laid out as ``docker push`` does."""
    out: dict[str, Any] = {"schemaVersion": m.schema_version}
    if m.media_type:
        out["mediaType"] = m.media_type
    if m.artifact_type:
        out["artifactType"] = m.artifact_type
    out["config"] = _stored(m.config)
    out["layers"] = [_stored(d) for d in m.layers]
    if m.subject is not None:
        out["subject"] = _stored(m.subject)
    if m.annotations:
        out["annotations"] = dict(m.annotations)
    return _go_json(out, 3)


def index_to_json(i: Index) -> bytes:
    """The bytes to store for an index matou creates, laid out as ``docker push`` does."""
    out: dict[str, Any] = {"schemaVersion": i.schema_version}
    if i.media_type:
        out["mediaType"] = i.media_type
    out["manifests"] = [_stored(d) for d in i.manifests]
    if i.subject is not None:
        out["subject"] = _stored(i.subject)
    if i.annotations:
        out["annotations"] = dict(i.annotations)
    return _go_json(out, 3)


def parse_config(data: bytes) -> ImageConfig:
    """Parse an image config (OCI or Docker: the same document)."""
    r = _Reader(_load(data, "image config"), "image config", "")
    rootfs = r.sub("rootfs")
    if rootfs is None:
        r.fail("missing", "rootfs")
    if rootfs.text("type", required=True) != "layers":
        rootfs.fail(f"unsupported type '{rootfs.text('type')}', must be 'layers'", "type")
    diff_ids = rootfs.obj.get("diff_ids")
    if diff_ids is None:
        diff_ids = []
    if not isinstance(diff_ids, list):
        rootfs.fail("expected array of digests", "diff_ids")
    parsed = []
    for i, d in enumerate(diff_ids):
        try:
            if not isinstance(d, str):
                raise InvalidArgument(f"invalid digest '{d}'")
            parsed.append(Digest.parse(d))
        except InvalidArgument as e:
            raise InvalidArgument(f"image config: rootfs.diff_ids[{i}]: {e}") from e
    config = r.sub("config")
    return ImageConfig(
        architecture=r.text("architecture"),
        os=r.text("os"),
        variant=r.text("variant"),
        config=config.obj if config is not None else {},
        rootfs_diff_ids=tuple(parsed),
        history=tuple(h.obj for h in r.objs("history")),
        created=r.text("created"),
        author=r.text("author"),
        raw=r.obj,
    )


def config_to_json(raw: dict[str, Any]) -> bytes:
    """Compact JSON of a config, as Docker's json.Marshal writes it; keys in ``raw``'s order.

    An image's ID is the digest of its config bytes as stored, whatever wrote them:
    keep the bytes a config arrived as, and call this only for configs matou creates.
    """
    return _go_json(raw, None)


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """Layer ChainIDs (image-spec config.md, "Layer ChainID").

    chain[0] = diff[0]; chain[n] = sha256(f"{chain[n-1]} {diff[n]}").
    """
    out: list[Digest] = []
    for d in diff_ids:
        out.append(d if not out else sha256_bytes(f"{out[-1]} {d}".encode()))
    return out


# uname machine / Go GOARCH spellings -> (architecture, variant)
_MACHINES = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "armv5tel": ("arm", "v5"),
    "i386": ("386", ""), "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
}


def default_platform(machine: str) -> Platform:
    """The Linux platform of a host whose ``os.uname().machine`` is ``machine``."""
    arch, variant = _MACHINES.get(machine, (machine, ""))
    return Platform("linux", arch, variant)


def normalize_platform(p: Platform) -> Platform:
    """containerd's Normalize, except that arm64 without a variant is spelled v8."""
    os_ = p.os.lower()
    if os_ == "macos":
        os_ = "darwin"
    arch, variant = p.architecture.lower(), p.variant.lower()
    if arch == "i386":
        arch, variant = "386", ""
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch = "amd64"
        if variant == "v1":
            variant = ""
    elif arch in ("aarch64", "arm64"):
        arch = "arm64"
        if variant in ("", "8", "v8", "v8.0"):
            variant = "v8"
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
    elif arch == "armhf":
        arch, variant = "arm", "v7"
    elif arch == "armel":
        arch, variant = "arm", "v6"
    elif arch == "arm" and variant in ("", "5", "6", "7", "8"):
        variant = "v" + (variant or "7")
    return p._replace(os=os_, architecture=arch, variant=variant)


def _variant_number(variant: str) -> int | None:
    try:
        return int(variant.removeprefix("v"))
    except ValueError:
        return None


def _runnable(want: Platform) -> list[tuple[str, str]]:
    """(architecture, variant) a host of ``want`` runs, best first (containerd's Only)."""
    arch, variant = want.architecture, want.variant
    out = [(arch, variant)]
    n = _variant_number(variant)
    if arch == "amd64":
        if n is not None and n > 1:
            out += [("amd64", f"v{k}") for k in range(n - 1, 1, -1)] + [("amd64", "")]
        out.append(("386", ""))
    elif arch == "arm" and n is not None:
        out += [("arm", f"v{k}") for k in range(n - 1, 4, -1)]
    elif arch == "arm64" and n is not None:
        out += [("arm64", f"v{k}") for k in range(n - 1, 7, -1)]
        out += [("arm", f"v{k}") for k in range(8, 4, -1)]
    return out


def _rank(want: Platform, have: Platform) -> int | None:
    w, h = normalize_platform(want), normalize_platform(have)
    if w.os != h.os:
        return None
    try:
        return _runnable(w).index((h.architecture, h.variant))
    except ValueError:
        return None


def platform_matches(want: Platform, have: Platform) -> bool:
    """Whether an image built for ``have`` runs on a host of platform ``want``."""
    return _rank(want, have) is not None


def select_manifest(index: Index, want: Platform) -> Descriptor:
    """The entry of ``index`` to pull for ``want``: the closest platform, first in order.

    Attestations (BuildKit's provenance and SBOM, platform unknown/unknown) and
    entries that are not manifests or indexes are skipped; an entry without a
    platform matches anything but loses to every entry whose platform matches.
    """
    best: tuple[int, int, Descriptor] | None = None
    for pos, d in enumerate(index.manifests):
        if d.annotations.get(ANNOTATION_REFERENCE_TYPE) == ATTESTATION_MANIFEST:
            continue
        if d.media_type not in MANIFEST_TYPES and d.media_type not in INDEX_TYPES:
            continue
        if d.platform is None:
            rank: int | None = 1 << 16
        elif d.platform.os == "unknown" and d.platform.architecture == "unknown":
            continue
        else:
            rank = _rank(want, d.platform)
        if rank is not None and (best is None or (rank, pos) < best[:2]):
            best = (rank, pos, d)
    if best is None:
        raise NotFound(f"no matching manifest for {want} in the manifest list entries")
    return best[2]
