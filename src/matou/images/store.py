"""Images: records, tags, layer unpacking, delete with reference counting, prune, gc.

    <root>/images/db.json      {"images": {id: record}, "tags": {reference: id}},
                               replaced atomically under lock; written LAST, so an image
                               is visible only once its blobs and snapshots are in place
    <root>/content/...         config, manifest and layer blobs (matou.content)
    <root>/snapshots/...       one committed snapshot per layer chain: "layer-<chainID>"

An image's ID is the digest of its config blob, exactly as Docker computes it, so the
same image has the same ID in both. A crash before the record is written leaves only
unreferenced blobs and snapshots, which ``gc`` (run at start-up) removes.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from matou.archive.apply import apply_layer
from matou.content import ContentStore
from matou.errors import FailedPrecondition, InvalidArgument, NotFound
from matou.linux import jsonfile
from matou.oci import reference
from matou.oci.digest import Digest, sha256_bytes
from matou.oci.image import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Manifest,
    chain_ids,
    descriptor,
    parse_config,
    parse_manifest_or_index,
)
from matou.snapshots import Snapshotter


def _empty_db() -> dict[str, Any]:
    return {"images": {}, "tags": {}}


LAYER_PREFIX = "layer-"
EXTRACT_PREFIX = "extract-"
DEFAULT_MAX_LAYER = 64 << 30  # an uncompressed layer larger than this is a bomb


class Image(NamedTuple):
    id: Digest
    config: ImageConfig
    manifest: Digest | None
    parent: Digest | None
    tags: tuple[str, ...]
    loaded: float
    layer_sizes: tuple[int, ...]
    repo_digests: tuple[str, ...] = ()  # NAME@DIGEST it was pulled by or pushed as

    @property
    def size(self) -> int:
        return sum(self.layer_sizes)

    @property
    def top_layer(self) -> str | None:
        chain = chain_ids(self.config.rootfs_diff_ids)
        return LAYER_PREFIX + chain[-1].hex if chain else None


class LayerSource(NamedTuple):
    """A layer blob already in the content store, to be unpacked as ``diff_id``."""
    blob: Digest
    diff_id: Digest


class ImageStore:
    def __init__(self, root: str, content: ContentStore, snapshots: Snapshotter,
                 parallel: int = 2) -> None:
        self.root = root
        self.content = content
        self.snapshots = snapshots
        self.parallel = max(1, parallel)
        os.makedirs(root, 0o700, exist_ok=True)
        self._db = os.path.join(root, "db.json")

    # -- the record file --------------------------------------------------------------------

    def _locked(self) -> AbstractContextManager[dict[str, Any]]:
        return jsonfile.locked(self._db, os.path.join(self.root, "lock"), _empty_db)

    def _load(self) -> dict[str, Any]:
        return jsonfile.read(self._db, _empty_db)

    # -- reading -----------------------------------------------------------------------------

    def _image(self, db: dict[str, Any], image_id: str) -> Image:
        raw = db["images"][image_id]
        digest = Digest.parse(image_id)
        config = parse_config(self.content.read(digest))
        tags = tuple(sorted(t for t, i in db["tags"].items() if i == image_id))
        return Image(
            id=digest, config=config,
            manifest=Digest.parse(raw["manifest"]) if raw.get("manifest") else None,
            parent=Digest.parse(raw["parent"]) if raw.get("parent") else None,
            tags=tags, loaded=raw.get("loaded", 0.0),
            layer_sizes=tuple(raw.get("layer_sizes", ())),
            repo_digests=tuple(raw.get("repo_digests", ())),
        )

    def images(self) -> list[Image]:
        db = self._load()
        return [self._image(db, i) for i in sorted(db["images"])]

    def resolve(self, name: str) -> Digest:
        """An image by reference (``busybox``, ``host/a:tag``), full ID or ID prefix."""
        db = self._load()
        return Digest.parse(self._resolve(db, name))

    def _resolve(self, db: dict[str, Any], name: str) -> str:
        bare = name.removeprefix("sha256:")
        if reference.is_image_id_like(name):
            matches = [i for i in db["images"] if i.removeprefix("sha256:").startswith(bare)]
            if len(matches) == 1:
                return str(matches[0])
            if len(matches) > 1:
                raise InvalidArgument(f"image id prefix {name!r} is ambiguous")
        try:
            ref = str(reference.parse(name))
        except InvalidArgument:
            raise NotFound(f"No such image: {name}") from None
        if ref in db["tags"]:
            return str(db["tags"][ref])
        raise NotFound(f"No such image: {name}")

    def get(self, name: str) -> Image:
        db = self._load()
        return self._image(db, self._resolve(db, name))

    def manifest(self, image: Image) -> Manifest | None:
        if image.manifest is None:
            return None
        m = parse_manifest_or_index(self.content.read(image.manifest))
        return m if isinstance(m, Manifest) else None

    # -- adding ------------------------------------------------------------------------------

    def add(self, config_bytes: bytes, layers: Sequence[LayerSource],
            manifest_bytes: bytes | None = None, parent: Digest | None = None,
            tags: Sequence[str] = (), extracted: dict[int, str] | None = None) -> Image:
        """Store an image whose layer blobs are already in the content store: check the
        layers against the config's diff IDs, unpack them, then publish the record."""
        config = parse_config(config_bytes)
        if [x.diff_id for x in layers] != list(config.rootfs_diff_ids):
            raise InvalidArgument("image layers do not match the config's rootfs.diff_ids")
        image_id = self.content.put(config_bytes)
        manifest_id = self.content.put(manifest_bytes) if manifest_bytes else None
        sizes = self.unpack_layers(layers, extracted)
        with self._locked() as db:
            old = db["images"].get(str(image_id), {})
            db["images"][str(image_id)] = {
                "manifest": str(manifest_id) if manifest_id else old.get("manifest"),
                "parent": str(parent) if parent else old.get("parent"),
                "loaded": old.get("loaded") or time.time(),
                "layer_sizes": sizes,
            }
            for t in tags:
                db["tags"][str(reference.parse(t))] = str(image_id)
            return self._image(db, str(image_id))

    def extract(self, layer: LayerSource) -> str | None:
        """Unpack one layer ahead of ``add`` — a pull does it as each download ends — into
        a snapshot of its own; the key to hand to ``add`` (None: the snapshotter chains
        layers and cannot unpack one alone)."""
        if not self.snapshots.can_rebase:
            return None
        key = f"{EXTRACT_PREFIX}{uuid.uuid4().hex}"
        self.snapshots.prepare(key, None)
        try:
            self._apply(layer, key)
        except BaseException:
            self.snapshots.remove(key)
            raise
        return key

    def discard(self, keys: Sequence[str]) -> None:
        """Snapshots from ``extract`` that no image took."""
        for key in keys:
            if self.snapshots.exists(key):
                self.snapshots.remove(key)

    def unpack_layers(self, layers: Sequence[LayerSource],
                      extracted: dict[int, str] | None = None) -> list[int]:
        """Make the committed snapshot of every layer chain; returns uncompressed sizes.

        Missing layers are unpacked side by side when the snapshotter allows it (overlay:
        a layer's upper dir does not depend on the layers below), then chained in order;
        ``extracted`` maps layer positions to snapshots ``extract`` already made.
        """
        extracted = dict(extracted or {})
        chain = chain_ids([x.diff_id for x in layers])
        names = [LAYER_PREFIX + c.hex for c in chain]
        sizes: list[int] = [0] * len(layers)
        todo = [i for i, n in enumerate(names) if not self.snapshots.exists(n)]
        self.discard([k for i, k in extracted.items() if i not in todo])
        for i, n in enumerate(names):
            if i not in todo:
                sizes[i] = int(self.snapshots.usage(n)[0])
        if not todo:
            return sizes
        if self.snapshots.can_rebase:
            keys = {i: extracted.get(i) or f"{EXTRACT_PREFIX}{uuid.uuid4().hex}" for i in todo}
            fresh = [i for i in todo if i not in extracted]
            for i in fresh:
                self.snapshots.prepare(keys[i], None)
            try:
                with ThreadPoolExecutor(self.parallel) as pool:
                    list(pool.map(lambda i: self._apply(layers[i], keys[i]), fresh))
                for i in todo:
                    parent = names[i - 1] if i else None
                    if self.snapshots.exists(names[i]):
                        self.snapshots.remove(keys[i])  # unpacked meanwhile by someone else
                    else:
                        self.snapshots.commit_onto(names[i], keys[i], parent)
                    sizes[i] = self.snapshots.usage(names[i])[0]
            except BaseException:
                for key in keys.values():
                    if self.snapshots.exists(key):
                        self.snapshots.remove(key)
                raise
            return sizes
        for i in todo:
            key = f"{EXTRACT_PREFIX}{uuid.uuid4().hex}"
            self.snapshots.prepare(key, names[i - 1] if i else None)
            try:
                self._apply(layers[i], key)
                sizes[i] = self.snapshots.usage(key)[0]
                self.snapshots.commit(names[i], key)
            except BaseException:
                self.snapshots.remove(key)
                raise
        return sizes

    def _apply(self, layer: LayerSource, key: str) -> int:
        with self.content.open(layer.blob) as f:
            result = apply_layer(f, self.snapshots.fs_dir(key), max_size=DEFAULT_MAX_LAYER,
                                 whiteout_mode=self.snapshots.whiteout_mode)
        if result.diff_id != str(layer.diff_id):
            raise InvalidArgument(f"layer {layer.blob}: content digest {result.diff_id} does "
                                  f"not match the config's diff ID {layer.diff_id}")
        return result.size

    # -- tags --------------------------------------------------------------------------------

    def tag(self, name: str, ref: str) -> str:
        with self._locked() as db:
            image_id = self._resolve(db, name)
            canonical = reference.parse(ref)
            if canonical.digest is not None:
                raise InvalidArgument(f"refusing to create a tag with a digest: {ref}")
            db["tags"][str(canonical)] = image_id
            return str(canonical)

    # -- removal -----------------------------------------------------------------------------

    def delete(self, name: str, force: bool = False, in_use: set[str] | None = None,
               prune_parents: bool = True) -> list[dict[str, str]]:
        """`docker rmi`: untag a reference, or delete the image once nothing names it.

        Returns Docker's response items: ``{"Untagged": ref}`` and ``{"Deleted": id}``.
        """
        out: list[dict[str, str]] = []
        with self._locked() as db:
            image_id = self._resolve(db, name)
            tags = [t for t, i in db["tags"].items() if i == image_id]
            by_id = reference.is_image_id_like(name) and name.removeprefix("sha256:") in (
                image_id.removeprefix("sha256:"))
            if not by_id:
                ref = str(reference.parse(name))
                del db["tags"][ref]
                out.append({"Untagged": reference.parse(ref).familiar()})
                if len(tags) > 1:
                    return out
            elif len(tags) > 1 and not force:
                raise FailedPrecondition(
                    f"conflict: unable to delete {image_id[7:19]} (must be forced) - image is "
                    "referenced in multiple repositories")
            else:
                for t in tags:
                    del db["tags"][t]
                    out.append({"Untagged": reference.parse(t).familiar()})
            children = [i for i, r in db["images"].items() if r.get("parent") == image_id]
            if children and by_id:
                raise FailedPrecondition(f"conflict: unable to delete {image_id[7:19]} "
                                         "(cannot be forced) - image has dependent child images")
            if in_use and image_id in in_use and not force:
                raise FailedPrecondition(f"conflict: unable to delete {image_id[7:19]} (must be "
                                         "forced) - image is being used by a container")
            if children:
                return out
            parent = db["images"][image_id].get("parent")
            del db["images"][image_id]
            out.append({"Deleted": image_id})
            # an untagged parent left without children goes too, as in Docker
            if prune_parents and parent and parent in db["images"] \
                    and parent not in db["tags"].values() \
                    and not any(r.get("parent") == parent for r in db["images"].values()):
                del db["images"][parent]
                out.append({"Deleted": parent})
        self.gc()
        return out

    def prune(self, dangling_only: bool = True, in_use: set[str] | None = None) -> list[str]:
        """Delete untagged images (or all unused ones); returns the deleted IDs."""
        deleted = []
        with self._locked() as db:
            tagged = set(db["tags"].values())
            parents = {r.get("parent") for r in db["images"].values()}
            for image_id in list(db["images"]):
                if (dangling_only and image_id in tagged) or image_id in (in_use or set()):
                    continue
                if image_id in parents:
                    continue
                for t in [t for t, i in db["tags"].items() if i == image_id]:
                    del db["tags"][t]
                del db["images"][image_id]
                deleted.append(image_id)
        self.gc()
        return deleted

    def gc(self, keep_snapshots: set[str] | None = None) -> tuple[list[Digest], list[str]]:
        """Remove blobs and layer snapshots that no image references."""
        db = self._load()
        blobs: set[Digest] = set()
        layers: set[str] = set()
        for image_id, raw in db["images"].items():
            digest = Digest.parse(image_id)
            blobs.add(digest)
            config = parse_config(self.content.read(digest))
            for c in chain_ids(config.rootfs_diff_ids):
                layers.add(LAYER_PREFIX + c.hex)
            if raw.get("manifest"):
                m_digest = Digest.parse(raw["manifest"])
                blobs.add(m_digest)
                m = parse_manifest_or_index(self.content.read(m_digest))
                if isinstance(m, Manifest):
                    blobs.update(d.digest for d in m.layers)
        removed_snaps = []
        keep = layers | (keep_snapshots or set())
        # children before parents: walk repeatedly until nothing more can go
        changed = True
        while changed:
            changed = False
            infos = self.snapshots.walk()
            parents = {i.parent for i in infos}
            for info in infos:
                if info.name.startswith(LAYER_PREFIX) and info.name not in keep \
                        and info.name not in parents:
                    self.snapshots.remove(info.name)
                    removed_snaps.append(info.name)
                    changed = True
        removed_blobs = self.content.gc(blobs)
        if removed_blobs and db.get("sources"):
            with self._locked() as db:
                for d in removed_blobs:
                    db.get("sources", {}).pop(str(d), None)
        return removed_blobs, removed_snaps

    # -- where blobs came from (for cross-repository mounts on push) -----------------------

    def sources(self, digest: Digest) -> list[str]:
        """The registry repositories ("host/repo") ``digest`` was pulled from or pushed
        to, most recent first."""
        return list(self._load().get("sources", {}).get(str(digest), []))

    def add_repo_digest(self, image_id: Digest, name_at_digest: str) -> None:
        """Remember that the image is NAME@DIGEST in a registry (docker's RepoDigests):
        one digest per repository, the latest."""
        name = name_at_digest.split("@", 1)[0]
        with self._locked() as db:
            raw = db["images"].get(str(image_id))
            if raw is not None:
                kept = [x for x in raw.get("repo_digests", []) if x.split("@", 1)[0] != name]
                raw["repo_digests"] = sorted([*kept, name_at_digest])

    def add_source(self, digests: Sequence[Digest], where: str, keep: int = 5) -> None:
        with self._locked() as db:
            known = db.setdefault("sources", {})
            for d in digests:
                places = [x for x in known.get(str(d), []) if x != where]
                known[str(d)] = [where, *places][:keep]

    def cleanup(self) -> list[str]:
        """At start-up (the store has one owner): drop the snapshots that unpacking left
        behind when it was killed, then everything no image references."""
        removed = []
        for info in self.snapshots.walk():
            if info.name.startswith(EXTRACT_PREFIX):
                self.snapshots.remove(info.name)
                removed.append(info.name)
        self.gc()
        return removed

    def history(self, name: str) -> list[dict[str, Any]]:
        image = self.get(name)
        return list(image.config.history)

    def exists_tag(self, ref: str) -> bool:
        return str(reference.parse(ref)) in self._load()["tags"]


def layer_media_type(content: ContentStore, blob: Digest) -> str:
    """The OCI layer media type of a stored blob, by its compression magic."""
    with content.open(blob) as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return OCI_LAYER_GZIP
    if magic == b"\x28\xb5\x2f\xfd":
        return OCI_LAYER_ZSTD
    return OCI_LAYER


def make_manifest(config_bytes: bytes, layers: Sequence[Descriptor]) -> bytes:
    """An OCI image manifest for a config and its layer descriptors."""
    config = descriptor(OCI_CONFIG, sha256_bytes(config_bytes), len(config_bytes))
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": config.to_json(), "layers": [d.to_json() for d in layers]},
                      separators=(",", ":")).encode()
