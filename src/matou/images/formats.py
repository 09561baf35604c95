"""Image archives in and out: `docker save` tarballs (the legacy layout and the OCI layout
that Docker 25+ writes) and OCI image layout directories.

What `save` writes is both at once, as Docker 25 does, so that old and new loaders, and
OCI tools (skopeo, umoci), all read it:

    oci-layout                          {"imageLayoutVersion": "1.0.0"}
    index.json                          one manifest per image, named by annotations
    blobs/sha256/<hex>                  config, manifest, and each layer as an
                                        uncompressed tar (its digest is its diff ID)
    manifest.json                       [{"Config", "RepoTags", "Layers"}] (docker load)
    repositories                        {"repo": {"tag": "<top layer chain id>"}}

Reading never trusts a path inside the archive for the filesystem: members are looked up
by name in the tar (or under the layout directory, refusing `..`), blobs are verified
against their digest while they stream into the content store, and diff IDs against the
image config while they unpack.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any, BinaryIO, NamedTuple

from matou.archive.compression import open_decompressed
from matou.errors import InvalidArgument
from matou.images.store import Image, ImageStore, LayerSource, layer_media_type, make_manifest
from matou.oci import image as oci
from matou.oci import reference
from matou.oci.digest import Digest, Hasher, sha256_bytes

MAX_JSON = 16 << 20  # manifest.json, index.json, configs, manifests
CHUNK = 1 << 20


class Loaded(NamedTuple):
    id: Digest
    tags: tuple[str, ...]


# -- reading sources ---------------------------------------------------------------------

class _Source:
    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def open(self, path: str) -> IO[bytes]:
        raise NotImplementedError

    def read_json_bytes(self, path: str) -> bytes:
        with self.open(path) as f:
            data = f.read(MAX_JSON + 1)
        if len(data) > MAX_JSON:
            raise InvalidArgument(f"archive: {path} is larger than {MAX_JSON} bytes")
        return data


def _clean(path: str) -> str:
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidArgument(f"archive: path {path!r} leaves the archive")
    return "/".join(parts)


class _TarSource(_Source):
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members = {_clean(m.name): m for m in tar.getmembers() if _clean(m.name)}

    def exists(self, path: str) -> bool:
        return _clean(path) in self.members

    def _member(self, path: str, depth: int = 0) -> tarfile.TarInfo:
        m = self.members.get(_clean(path))
        if m is None:
            raise InvalidArgument(f"archive: {path} is missing")
        if m.issym() or m.islnk():  # docker save links identical layers to one another
            if depth > 8:
                raise InvalidArgument(f"archive: {path}: too many links")
            target = m.linkname if m.islnk() else os.path.join(os.path.dirname(m.name),
                                                               m.linkname)
            return self._member(os.path.normpath(target).lstrip("/"), depth + 1)
        if not m.isfile():
            raise InvalidArgument(f"archive: {path} is not a file")
        return m

    def open(self, path: str) -> IO[bytes]:
        f = self.tar.extractfile(self._member(path))
        assert f is not None
        return f


class _DirSource(_Source):
    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)

    def _path(self, path: str) -> str:
        full = os.path.realpath(os.path.join(self.root, _clean(path)))
        if not full.startswith(self.root + "/"):
            raise InvalidArgument(f"layout: path {path!r} leaves the layout")
        return full

    def exists(self, path: str) -> bool:
        return os.path.isfile(self._path(path))

    def open(self, path: str) -> IO[bytes]:
        try:
            return open(self._path(path), "rb")
        except FileNotFoundError as e:
            raise InvalidArgument(f"layout: {path} is missing") from e


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"archive: {what}: malformed JSON: {e}") from e


# -- load ----------------------------------------------------------------------------------

def load_archive(store: ImageStore, stream: BinaryIO) -> list[Loaded]:
    """`docker load`: a (possibly compressed) save archive from a file or a pipe."""
    with tempfile.TemporaryFile(dir=store.content.ingest_dir) as spool:
        # tarfile needs to seek to find manifest.json, which may come last: spool pipes
        src: BinaryIO = open_decompressed(stream)
        if _seekable(stream) and src is stream:
            fobj: BinaryIO = stream
        else:
            shutil.copyfileobj(src, spool, CHUNK)
            spool.seek(0)
            fobj = spool
        try:
            with tarfile.open(fileobj=fobj, mode="r:") as tar:
                return _load(store, _TarSource(tar))
        except tarfile.TarError as e:
            raise InvalidArgument(f"archive: not a tar file: {e}") from e


def load_layout(store: ImageStore, path: str, tag: str | None = None) -> list[Loaded]:
    """An OCI image layout directory (skopeo's or umoci's ``oci:DIR``)."""
    if not os.path.isfile(os.path.join(path, "index.json")):
        raise InvalidArgument(f"{path}: not an OCI image layout (no index.json)")
    return _load_oci(store, _DirSource(path), tag)  # index.json, even beside manifest.json


def _seekable(f: BinaryIO) -> bool:
    try:
        return f.seekable()
    except (AttributeError, OSError):
        return False


def _load(store: ImageStore, src: _Source, tag: str | None = None) -> list[Loaded]:
    if src.exists("manifest.json"):
        return _load_docker(store, src)
    if src.exists("index.json"):
        return _load_oci(store, src, tag)
    raise InvalidArgument("archive: neither manifest.json nor index.json found")


def _load_docker(store: ImageStore, src: _Source) -> list[Loaded]:
    entries = _json(src.read_json_bytes("manifest.json"), "manifest.json")
    if not isinstance(entries, list):
        raise InvalidArgument("archive: manifest.json: expected a list")
    out = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or \
                not isinstance(entry.get("Layers"), list):
            raise InvalidArgument(f"archive: manifest.json[{n}]: needs Config and Layers")
        config_bytes = src.read_json_bytes(entry["Config"])
        config = oci.parse_config(config_bytes)
        if len(entry["Layers"]) != len(config.rootfs_diff_ids):
            raise InvalidArgument(f"archive: manifest.json[{n}]: {len(entry['Layers'])} "
                                  f"layers but the config has {len(config.rootfs_diff_ids)}")
        layers = []
        descriptors = []
        for path, diff_id in zip(entry["Layers"], config.rootfs_diff_ids, strict=True):
            with src.open(path) as f:
                blob, size = _ingest(store, f)
            layers.append(LayerSource(blob, diff_id))
            descriptors.append(oci.descriptor(layer_media_type(store.content, blob), blob, size))
        manifest = make_manifest(config_bytes, descriptors)
        tags = [t for t in entry.get("RepoTags") or [] if isinstance(t, str)]
        for t in tags:
            reference.parse(t)  # a bad tag fails the load before anything is recorded
        img = store.add(config_bytes, layers, manifest, tags=tags)
        out.append(Loaded(img.id, tuple(tags)))
    return out


def _load_oci(store: ImageStore, src: _Source, tag: str | None) -> list[Loaded]:
    index = oci.parse_manifest_or_index(src.read_json_bytes("index.json"), oci.OCI_INDEX)
    if not isinstance(index, oci.Index):
        raise InvalidArgument("layout: index.json is not an image index")
    out = []
    for desc, name in _walk_index(src, index, None):
        manifest_bytes = _blob_bytes(src, desc.digest)
        m = oci.parse_manifest_or_index(manifest_bytes, desc.media_type)
        assert isinstance(m, oci.Manifest)
        config_bytes = _blob_bytes(src, m.config.digest)
        config = oci.parse_config(config_bytes)
        if len(m.layers) != len(config.rootfs_diff_ids):
            raise InvalidArgument(f"layout: manifest {desc.digest} and its config disagree "
                                  "on the number of layers")
        layers = []
        for layer, diff_id in zip(m.layers, config.rootfs_diff_ids, strict=True):
            if not store.content.exists(layer.digest):
                with src.open(_blob_path(layer.digest)) as f:
                    store.content.ingest(f, layer.digest, layer.size)
            layers.append(LayerSource(layer.digest, diff_id))
        tags = []
        if tag:
            tags.append(tag)
        elif name:
            tags.append(name)
        img = store.add(config_bytes, layers, manifest_bytes, tags=tags)
        out.append(Loaded(img.id, tuple(tags)))
    return out


def _walk_index(src: _Source, index: oci.Index, name: str | None,
                depth: int = 0) -> Iterator[tuple[oci.Descriptor, str | None]]:
    if depth > 4:
        raise InvalidArgument("layout: indexes nested too deep")
    for desc in index.manifests:
        ann = desc.annotations
        ref = ann.get("io.containerd.image.name") or name
        if ref is None and ann.get("org.opencontainers.image.ref.name"):
            ref_name = ann["org.opencontainers.image.ref.name"]
            try:
                ref = str(reference.parse(ref_name))
            except InvalidArgument:
                ref = None  # a bare tag such as "latest" names no repository
        if desc.media_type in (oci.OCI_INDEX, oci.DOCKER_MANIFEST_LIST):
            sub = oci.parse_manifest_or_index(_blob_bytes(src, desc.digest), desc.media_type)
            assert isinstance(sub, oci.Index)
            machine = os.uname().machine
            chosen = oci.select_manifest(sub, oci.default_platform(machine))
            yield from _walk_index(src, sub._replace(manifests=(chosen,)), ref, depth + 1)
        elif desc.media_type in (oci.OCI_MANIFEST, oci.DOCKER_MANIFEST):
            yield desc, ref


def _blob_path(d: Digest) -> str:
    return f"blobs/{d.algorithm}/{d.hex}"


def _blob_bytes(src: _Source, d: Digest) -> bytes:
    data = src.read_json_bytes(_blob_path(d))
    h = Hasher(d.algorithm)
    h.update(data)
    if h.digest() != d:
        raise InvalidArgument(f"layout: blob {d} does not match its digest")
    return data


def _ingest(store: ImageStore, f: IO[bytes]) -> tuple[Digest, int]:
    with store.content.writer() as w:
        w.copy_from(f)
        size = w.hasher.size
        return w.commit(), size


# -- save ------------------------------------------------------------------------------------

def save_archive(store: ImageStore, names: Sequence[str], out: BinaryIO) -> None:
    """`docker save NAME…` as a tar stream on ``out`` (see the module docstring)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _save(store, names, _TarSink(tar))


def save_layout(store: ImageStore, names: Sequence[str], path: str) -> None:
    """An OCI image layout directory (what `skopeo copy … oci:DIR` reads)."""
    os.makedirs(path, exist_ok=True)
    _save(store, names, _DirSink(path))


class _Sink:
    def add_bytes(self, path: str, data: bytes) -> None:
        raise NotImplementedError

    def add_stream(self, path: str, size: int, stream: IO[bytes]) -> None:
        raise NotImplementedError

    def has(self, path: str) -> bool:
        raise NotImplementedError


class _TarSink(_Sink):
    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.written: set[str] = set()
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)

    def add_stream(self, path: str, size: int, stream: IO[bytes]) -> None:
        info = tarfile.TarInfo(path)
        info.size = size
        info.mode = 0o644
        self.tar.addfile(info, stream)
        self.written.add(path)

    def add_bytes(self, path: str, data: bytes) -> None:
        self.add_stream(path, len(data), io.BytesIO(data))

    def has(self, path: str) -> bool:
        return path in self.written


class _DirSink(_Sink):
    def __init__(self, root: str) -> None:
        self.root = root

    def add_stream(self, path: str, size: int, stream: IO[bytes]) -> None:
        full = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        tmp = full + ".tmp"
        with open(tmp, "wb") as f:
            shutil.copyfileobj(stream, f, CHUNK)
        os.rename(tmp, full)

    def add_bytes(self, path: str, data: bytes) -> None:
        self.add_stream(path, len(data), io.BytesIO(data))

    def has(self, path: str) -> bool:
        return os.path.exists(os.path.join(self.root, path))


def _save(store: ImageStore, names: Sequence[str], sink: _Sink) -> None:
    chosen: dict[str, tuple[Image, list[str]]] = {}
    for name in names:
        img = store.get(name)
        entry = chosen.setdefault(str(img.id), (img, []))
        if not reference.is_image_id_like(name):
            ref = reference.parse(name)
            if ref.tag is not None:
                entry[1].append(ref.familiar())
    manifest_json: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    index: list[dict[str, Any]] = []
    for img, tags in chosen.values():
        config_bytes = store.content.read(img.id)
        sink.add_bytes(_blob_path(img.id), config_bytes) if not sink.has(
            _blob_path(img.id)) else None
        layer_descs = []
        stored = store.manifest(img)
        for i, diff_id in enumerate(img.config.rootfs_diff_ids):
            path = _blob_path(diff_id)
            blob = stored.layers[i].digest if stored else diff_id
            size = _write_layer(store, sink, path, blob, diff_id)
            layer_descs.append(oci.descriptor(oci.OCI_LAYER, diff_id, size))
        manifest = make_manifest(config_bytes, layer_descs)
        m_digest = sha256_bytes(manifest)
        sink.add_bytes(_blob_path(m_digest), manifest)
        chains = oci.chain_ids(img.config.rootfs_diff_ids)
        for t in tags or [None]:  # type: ignore[list-item]
            ann = {}
            if t is not None:
                ref = reference.parse(t)
                ann = {"io.containerd.image.name": str(ref),
                       "org.opencontainers.image.ref.name": ref.tag or "latest"}
                repositories.setdefault(ref.familiar_name, {})[ref.tag or "latest"] = (
                    chains[-1].hex if chains else "")
            index.append(oci.descriptor(oci.OCI_MANIFEST, m_digest, len(manifest),
                                        ann or None).to_json())
        manifest_json.append({
            "Config": _blob_path(img.id),
            "RepoTags": tags or None,
            "Layers": [_blob_path(d) for d in img.config.rootfs_diff_ids],
        })
    sink.add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    sink.add_bytes("index.json", json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
                                             "manifests": index}).encode())
    sink.add_bytes("manifest.json", json.dumps(manifest_json).encode())
    if repositories:
        sink.add_bytes("repositories", json.dumps(repositories).encode())


def _write_layer(store: ImageStore, sink: _Sink, path: str, blob: Digest,
                 diff_id: Digest) -> int:
    """Write the uncompressed layer (digest == diff ID) once; returns its size."""
    if blob == diff_id:
        size = store.content.size(blob)
        if not sink.has(path):
            with store.content.open(blob) as f:
                sink.add_stream(path, size, f)
        return size
    with store.content.open(blob) as f, tempfile.TemporaryFile(
            dir=store.content.ingest_dir) as spool:
        h = Hasher("sha256")
        src = open_decompressed(f)
        while chunk := src.read(CHUNK):
            h.update(chunk)
            spool.write(chunk)
        if h.digest() != diff_id:
            raise InvalidArgument(f"layer {blob}: content does not match diff ID {diff_id}")
        size = spool.tell()
        spool.seek(0)
        if not sink.has(path):
            sink.add_stream(path, size, spool)
        return size
