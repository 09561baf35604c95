"""The registry's meaning above a storage driver: blobs, uploads, manifests, tags,
referrers, catalog, garbage collection. Every path is made by the one function below.

    blobs/<alg>/<hex>                         every blob and manifest, once, by digest
    repositories/<name>/
      _layers/<alg>/<hex>                     "this repository has that blob" (empty)
      _manifests/revisions/<alg>/<hex>        {"mediaType", "size", "subject"?}
      _manifests/tags/<tag>                   the tag's digest (text)
      _referrers/<alg>/<hex>/<alg>:<hex>      a descriptor of a manifest whose subject is
                                              <alg>:<hex> (JSON)
    _uploads/<uuid>/data, _uploads/<uuid>/info  an upload in progress: {"name", "algorithm"}

May import: registry (storage), oci, errors (and stdlib).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

from matou.errors import InvalidArgument
from matou.oci.digest import Digest
from matou.registry.storage import Driver

NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)"
                  r"[a-z0-9]+)*)*")
TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_MANIFEST = 4 << 20
# layers a client does not push (non-distributable, foreign) and the empty descriptor
NOT_PUSHED = ("application/vnd.oci.empty.v1+json",
              "application/vnd.oci.image.layer.nondistributable.v1.tar",
              "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
              "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
              "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")


class RegistryError(Exception):
    """An OCI distribution error: its code, HTTP status, message and detail."""

    STATUS = {"BLOB_UNKNOWN": 404, "BLOB_UPLOAD_INVALID": 400, "BLOB_UPLOAD_UNKNOWN": 404,
              "DIGEST_INVALID": 400, "MANIFEST_BLOB_UNKNOWN": 404, "MANIFEST_INVALID": 400,
              "MANIFEST_UNKNOWN": 404, "NAME_INVALID": 400, "NAME_UNKNOWN": 404,
              "SIZE_INVALID": 400, "UNAUTHORIZED": 401, "DENIED": 403, "UNSUPPORTED": 405,
              "TOOMANYREQUESTS": 429, "RANGE_INVALID": 416}

    def __init__(self, code: str, message: str, detail: Any = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.status = status or self.STATUS.get(code, 400)


class Upload(NamedTuple):
    id: str
    name: str
    size: int


def _digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidArgument as e:
        raise RegistryError("DIGEST_INVALID", str(e)) from e


def check_name(name: str) -> None:
    if len(name) > 255 or not NAME.fullmatch(name):
        raise RegistryError("NAME_INVALID", f"invalid repository name {name!r}")


class Store:
    def __init__(self, driver: Driver) -> None:
        self.d = driver

    # -- the layout ----------------------------------------------------------------------

    @staticmethod
    def path(kind: str, name: str = "", digest: Digest | None = None, tag: str = "",
             upload: str = "", subject: Digest | None = None) -> str:
        if kind == "blob":
            assert digest is not None
            return f"blobs/{digest.algorithm}/{digest.hex}"
        if kind == "upload":
            return f"_uploads/{upload}"
        repo = f"repositories/{name}"
        if kind == "repo":
            return repo
        if kind == "layer":
            assert digest is not None
            return f"{repo}/_layers/{digest.algorithm}/{digest.hex}"
        if kind == "revision":
            assert digest is not None
            return f"{repo}/_manifests/revisions/{digest.algorithm}/{digest.hex}"
        if kind == "revisions":
            return f"{repo}/_manifests/revisions"
        if kind == "tag":
            return f"{repo}/_manifests/tags/{tag}"
        if kind == "tags":
            return f"{repo}/_manifests/tags"
        if kind == "referrers":
            assert subject is not None
            return f"{repo}/_referrers/{subject.algorithm}/{subject.hex}"
        raise ValueError(kind)

    # -- blobs ---------------------------------------------------------------------------

    def blob_size(self, name: str, digest: str) -> tuple[Digest, int]:
        check_name(name)
        dg = _digest(digest)
        size = self.d.size(self.path("blob", digest=dg))
        if size is None or self.d.read(self.path("layer", name, dg)) is None:
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
        return dg, size

    def open_blob(self, dg: Digest, offset: int = 0) -> BinaryIO:
        f = self.d.open(self.path("blob", digest=dg), offset)
        if f is None:
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry", {"digest": str(dg)})
        return f

    def has_blob(self, dg: Digest) -> bool:
        return self.d.size(self.path("blob", digest=dg)) is not None

    def link_blob(self, name: str, dg: Digest) -> None:
        self.d.write(self.path("layer", name, dg), b"")

    def mount(self, name: str, digest: str, source: str) -> bool:
        """Cross-repository mount: True when ``source`` has the blob (now ``name`` has it
        too). A missing ``source`` (a client may omit it) means any repository."""
        dg = _digest(digest)
        if not self.has_blob(dg):
            return False
        if source:
            try:
                check_name(source)
            except RegistryError:
                return False
            if self.d.read(self.path("layer", source, dg)) is None:
                return False
        self.link_blob(name, dg)
        return True

    def delete_blob(self, name: str, digest: str) -> None:
        dg, _ = self.blob_size(name, digest)
        self.d.delete(self.path("layer", name, dg))

    # -- uploads -------------------------------------------------------------------------

    def start_upload(self, name: str) -> Upload:
        check_name(name)
        ident = str(uuid.uuid4())
        base = self.path("upload", upload=ident)
        self.d.write(f"{base}/info", json.dumps({"name": name}).encode())
        self.d.write(f"{base}/data", b"")
        return Upload(ident, name, 0)

    def upload(self, name: str, ident: str) -> Upload:
        base = self.path("upload", upload=ident) if re.fullmatch(r"[0-9a-f-]{36}", ident) \
            else None
        info = self.d.read(f"{base}/info") if base else None
        if base is None or info is None or json.loads(info).get("name") != name:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
                                {"uuid": ident})
        return Upload(ident, name, self.d.size(f"{base}/data") or 0)

    def append(self, up: Upload, chunks: Iterator[bytes], start: int | None = None) -> Upload:
        if start is not None and start != up.size:
            raise RegistryError("RANGE_INVALID", "the chunk does not continue the upload",
                                {"expected": up.size, "got": start})
        size = self.d.append(f"{self.path('upload', upload=up.id)}/data", chunks)
        return up._replace(size=size)

    def finish(self, up: Upload, digest: str) -> Digest:
        """The upload as a blob with ``digest`` (checked): moved into place, linked."""
        dg = _digest(digest)
        data = f"{self.path('upload', upload=up.id)}/data"
        h = hashlib.new(dg.algorithm)
        f = self.d.open(data)
        assert f is not None
        with f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != dg.hex:
            self.cancel(up)  # a wrong digest stores nothing
            raise RegistryError("DIGEST_INVALID", "provided digest did not match uploaded "
                                "content", {"digest": digest})
        if self.has_blob(dg):
            self.d.delete(data)
        else:
            self.d.move(data, self.path("blob", digest=dg))
        self.link_blob(up.name, dg)
        self.cancel(up)
        return dg

    def cancel(self, up: Upload) -> None:
        self.d.delete(self.path("upload", upload=up.id))

    # -- manifests -----------------------------------------------------------------------

    def put_manifest(self, name: str, ref: str, data: bytes, media_type: str,
                     tags: tuple[str, ...] = ()) -> tuple[Digest, Digest | None]:
        """Store a manifest under a tag or its digest (and ``tags``: the ?tag= of a push
        by digest); returns (digest, subject)."""
        for t in tags:
            if not TAG.fullmatch(t):
                raise RegistryError("MANIFEST_INVALID", f"invalid tag {t!r}")
        check_name(name)
        if len(data) > MAX_MANIFEST:
            raise RegistryError("SIZE_INVALID", "manifest too big")
        algorithm = ref.partition(":")[0] if ":" in ref else "sha256"
        if algorithm not in ("sha256", "sha512"):
            raise RegistryError("DIGEST_INVALID", f"unsupported digest algorithm {algorithm}")
        dg = Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
        if ":" in ref and _digest(ref) != dg:
            raise RegistryError("DIGEST_INVALID", "the manifest's digest does not match its "
                                "reference", {"digest": ref})
        if ":" not in ref and not TAG.fullmatch(ref):
            raise RegistryError("MANIFEST_INVALID", f"invalid tag {ref!r}")
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise RegistryError("MANIFEST_INVALID", f"manifest is not JSON: {e}") from e
        if not isinstance(doc, dict):
            raise RegistryError("MANIFEST_INVALID", "manifest is not a JSON object")
        media_type = media_type or doc.get("mediaType") or \
            "application/vnd.oci.image.manifest.v1+json"
        if doc.get("mediaType") and doc["mediaType"] != media_type:
            raise RegistryError("MANIFEST_INVALID", "mediaType does not match Content-Type")
        if "manifests" in doc and "layers" in doc:  # CVE-2021-41190: ambiguous documents
            raise RegistryError("MANIFEST_INVALID", "a manifest with both manifests and "
                                "layers")
        self._check_references(name, doc, media_type)
        subject = None
        if isinstance(doc.get("subject"), dict) and doc["subject"].get("digest"):
            subject = _digest(doc["subject"]["digest"])
        blob = self.path("blob", digest=dg)
        if not self.has_blob(dg):
            self.d.write(blob, data)
        record = {"mediaType": media_type, "size": len(data)}
        if subject is not None:
            record["subject"] = str(subject)
            desc: dict[str, Any] = {"mediaType": media_type, "digest": str(dg),
                                    "size": len(data)}
            artifact = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
            if artifact:
                desc["artifactType"] = artifact
            if doc.get("annotations"):
                desc["annotations"] = doc["annotations"]
            self.d.write(f"{self.path('referrers', name, subject=subject)}/{dg}",
                         json.dumps(desc).encode())
        self.d.write(self.path("revision", name, dg), json.dumps(record).encode())
        for t in ((ref,) if ":" not in ref else ()) + tags:
            self.d.write(self.path("tag", name, tag=t), str(dg).encode())
        return dg, subject

    def _check_references(self, name: str, doc: dict[str, Any], media_type: str) -> None:
        if media_type in INDEX_TYPES or "manifests" in doc:
            for m in doc.get("manifests") or []:
                dg = _digest(str((m or {}).get("digest", "")))
                if self.d.read(self.path("revision", name, dg)) is None:
                    raise RegistryError("MANIFEST_BLOB_UNKNOWN", "manifest unknown in index",
                                        {"digest": str(dg)})
            return
        for d in [doc.get("config"), *(doc.get("layers") or [])]:
            if not isinstance(d, dict) or "digest" not in d:
                continue
            dg = _digest(str(d["digest"]))
            if self.d.read(self.path("layer", name, dg)) is None and \
                    d.get("mediaType") not in NOT_PUSHED:
                raise RegistryError("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry",
                                    {"digest": str(dg)})

    def resolve(self, name: str, ref: str) -> tuple[Digest, dict[str, Any]]:
        check_name(name)
        if ":" in ref:
            dg = _digest(ref)
        else:
            text = self.d.read(self.path("tag", name, tag=ref)) if TAG.fullmatch(ref) else None
            if text is None:
                raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown", {"tag": ref})
            dg = _digest(text.decode())
        record = self.d.read(self.path("revision", name, dg))
        if record is None:
            raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown", {"digest": str(dg)})
        return dg, json.loads(record)

    def manifest(self, name: str, ref: str) -> tuple[Digest, str, bytes]:
        dg, record = self.resolve(name, ref)
        data = self.d.read(self.path("blob", digest=dg))
        if data is None:
            raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown", {"digest": str(dg)})
        return dg, record["mediaType"], data

    def delete_manifest(self, name: str, ref: str) -> None:
        """By digest: the manifest, its tags and its referrer entry; by tag: the tag."""
        dg, record = self.resolve(name, ref)
        if ":" not in ref:
            self.d.delete(self.path("tag", name, tag=ref))
            return
        for t in self.tags(name):
            if self.d.read(self.path("tag", name, tag=t)) == str(dg).encode():
                self.d.delete(self.path("tag", name, tag=t))
        if record.get("subject"):
            subject = _digest(record["subject"])
            self.d.delete(f"{self.path('referrers', name, subject=subject)}/{dg}")
        self.d.delete(self.path("revision", name, dg))

    # -- listing -----------------------------------------------------------------------

    def tags(self, name: str) -> list[str]:
        check_name(name)
        return sorted(self.d.list(self.path("tags", name)))

    def repo_exists(self, name: str) -> bool:
        return bool(self.d.list(self.path("repo", name)))

    def catalog(self) -> list[str]:
        out: list[str] = []

        def walk(prefix: str) -> None:
            entries = self.d.list(prefix)
            if "_manifests" in entries or "_layers" in entries:
                out.append(prefix[len("repositories/"):])
            for e in entries:
                if not e.startswith("_"):
                    walk(f"{prefix}/{e}")

        for top in self.d.list("repositories"):
            walk(f"repositories/{top}")
        return sorted(out)

    def referrers(self, name: str, digest: str, artifact_type: str = "") -> list[dict[str, Any]]:
        check_name(name)
        subject = _digest(digest)
        base = self.path("referrers", name, subject=subject)
        out = []
        for entry in self.d.list(base):
            raw = self.d.read(f"{base}/{entry}")
            if raw is None:
                continue
            desc = json.loads(raw)
            if artifact_type and desc.get("artifactType") != artifact_type:
                continue
            out.append(desc)
        return out

    # -- garbage collection ----------------------------------------------------------

    def gc(self, dry_run: bool = False) -> list[str]:
        """Blobs no repository links and no manifest names, removed; returns them."""
        used: set[str] = set()
        for name in self.catalog():
            for alg in self.d.list(f"{self.path('repo', name)}/_layers"):
                for hx in self.d.list(f"{self.path('repo', name)}/_layers/{alg}"):
                    used.add(f"{alg}:{hx}")
            for alg in self.d.list(self.path("revisions", name)):
                for hx in self.d.list(f"{self.path('revisions', name)}/{alg}"):
                    used.add(f"{alg}:{hx}")
        gone = []
        for alg in self.d.list("blobs"):
            for hx in self.d.list(f"blobs/{alg}"):
                if f"{alg}:{hx}" not in used:
                    gone.append(f"{alg}:{hx}")
                    if not dry_run:
                        self.d.delete(f"blobs/{alg}/{hx}")
        return gone
