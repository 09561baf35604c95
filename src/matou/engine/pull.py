"""`docker pull`: an image from a registry into the image store, with Docker's progress
stream (the JSON lines the docker CLI draws its bars from).

Layers download in parallel (3 at a time by default), each streamed into the content
store and verified against its digest before it counts; layers already present are
skipped; a download cut off is resumed with a Range request. Each layer is unpacked as
soon as it is in (overlay: into a snapshot of its own), while the others still
download; the store chains them in order at the end. The manifest is checked against the
digest asked for (pull by digest) and against the registry's Docker-Content-Digest.

May import: images, registry, oci, errors (and stdlib).
"""

from __future__ import annotations

import asyncio
import hashlib
import platform
from collections.abc import Awaitable, Callable
from typing import Any

from matou.errors import FailedPrecondition, InvalidArgument, MatouError
from matou.images.store import ImageStore, LayerSource
from matou.oci import image as oci
from matou.oci import reference
from matou.oci.digest import Digest
from matou.registry.client import Credentials, Registry, insecure

Emit = Callable[[dict[str, Any]], Awaitable[None]]


def _check(data: bytes, digest: str, what: str) -> Digest:
    dg = Digest.parse(digest) if digest else Digest("sha256", hashlib.sha256(data).hexdigest())
    if hashlib.new(dg.algorithm, data).hexdigest() != dg.hex:
        raise InvalidArgument(f"{what}: content does not match digest {digest}")
    return dg


async def pull(store: ImageStore, text: str, emit: Emit, creds: Credentials | None = None,
               insecure_registries: tuple[str, ...] = (), parallel: int = 3,
               want: oci.Platform | None = None, mirrors: tuple[str, ...] = ()) -> str:
    """Pull ``text`` (a reference) into ``store``; returns the image ID. Docker Hub's
    images are asked of the ``mirrors`` first, in order, as dockerd does."""
    ref = reference.parse(text)
    want = want or oci.default_platform(platform.machine())
    tag_or_digest = str(ref.digest) if ref.digest else (ref.tag or "latest")
    candidates = [Registry(ref.domain, True, None, base=m) for m in mirrors
                  if ref.domain == "docker.io"]
    candidates.append(Registry(ref.domain, insecure(ref.domain, insecure_registries), creds))
    reg = candidates[-1]
    data, media_type, said = b"", "", ""
    for i, candidate in enumerate(candidates):
        try:
            # the manifest first: what fails here is an error answer, not a broken stream
            data, media_type, said = await candidate.manifest(ref.path, tag_or_digest)
            reg = candidate
            break
        except MatouError:
            if i == len(candidates) - 1:
                for c in candidates:
                    await c.close()
                raise
    for c in candidates:
        if c is not reg:
            await c.close()
    try:
        await emit({"status": f"Pulling from {ref.path}", "id": ref.tag or str(ref.digest)})
        top = _check(data, str(ref.digest) if ref.digest else said, "manifest")
        doc = oci.parse_manifest_or_index(data, media_type or None)
        if isinstance(doc, oci.Index):
            desc = oci.select_manifest(doc, want)
            data, media_type, said = await reg.manifest(ref.path, str(desc.digest))
            _check(data, str(desc.digest), "manifest")
            doc = oci.parse_manifest_or_index(data, desc.media_type)
        if not isinstance(doc, oci.Manifest):
            raise FailedPrecondition(f"{text}: no image manifest for {want}")
        manifest_bytes = data
        config_bytes = b"".join([c async for c in reg.blob(ref.path, str(doc.config.digest))])
        _check(config_bytes, str(doc.config.digest), "config")
        config = oci.parse_config(config_bytes)
        if len(config.rootfs_diff_ids) != len(doc.layers):
            raise InvalidArgument(f"{text}: the manifest's layers and the config's diff_ids "
                                  "disagree")
        sem = asyncio.Semaphore(max(1, parallel))
        sources = [LayerSource(x.digest, d) for x, d in zip(doc.layers, config.rootfs_diff_ids,
                                                             strict=True)]
        extracted: dict[int, str] = {}

        present = {x.digest for x in doc.layers if store.content.exists(x.digest)}

        async def fetch(i: int, layer: oci.Descriptor) -> None:
            short = layer.digest.short
            if layer.digest in present:
                return
            async with sem:
                await _download(store, reg, ref.path, layer, emit)
            # unpacked now, while the other layers still download
            await emit({"status": "Extracting", "id": short, "progressDetail": {}})
            key = await asyncio.to_thread(store.extract, sources[i])
            if key is not None:
                extracted[i] = key

        for layer in doc.layers:
            await emit({"status": "Already exists" if layer.digest in present else
                        "Pulling fs layer", "id": layer.digest.short, "progressDetail": {}})
        try:
            await asyncio.gather(*(fetch(i, x) for i, x in enumerate(doc.layers)))
            tags = [str(ref)] if not ref.digest else []
            img = await asyncio.to_thread(store.add, config_bytes, sources, manifest_bytes,
                                          None, tags, extracted)
        except BaseException:
            await asyncio.to_thread(store.discard, list(extracted.values()))
            raise
        for layer in doc.layers:
            if layer.digest not in present:
                await emit({"status": "Pull complete", "id": layer.digest.short,
                            "progressDetail": {}})
        await asyncio.to_thread(store.add_source, [x.digest for x in doc.layers] +
                                [doc.config.digest], f"{ref.domain}/{ref.path}")
        await asyncio.to_thread(store.add_repo_digest, img.id, f"{ref.name}@{top}")
        await emit({"status": f"Digest: {top}"})
        return str(img.id)
    finally:
        await reg.close()


async def _download(store: ImageStore, reg: Registry, repo: str, layer: oci.Descriptor,
                    emit: Emit) -> None:
    short = layer.digest.short
    total = layer.size
    done = 0
    attempts = 0
    w = store.content.writer(layer.digest, total)
    try:
        while True:
            try:
                last = 0
                async for chunk in reg.blob(repo, str(layer.digest), done):
                    await asyncio.to_thread(w.write, chunk)
                    done += len(chunk)
                    if done - last >= (512 << 10) or done == total:
                        last = done
                        await emit({"status": "Downloading", "id": short,
                                    "progressDetail": {"current": done, "total": total},
                                    "progress": _bar(done, total)})
                break
            except (ConnectionError, TimeoutError, OSError) as e:
                attempts += 1
                if attempts > 5 or (done == 0 and attempts > 2):
                    raise FailedPrecondition(f"download of {layer.digest}: {e}") from e
                await emit({"status": f"Retrying in {attempts} seconds", "id": short,
                            "progressDetail": {}})
                await asyncio.sleep(attempts)
        await emit({"status": "Verifying Checksum", "id": short, "progressDetail": {}})
        await asyncio.to_thread(w.commit)
        await emit({"status": "Download complete", "id": short, "progressDetail": {}})
    except BaseException:
        w.abort()
        raise


def _bar(done: int, total: int) -> str:
    width = 50
    filled = int(width * done / total) if total else width
    arrow = ">" if filled < width else ""
    return f"[{'=' * max(filled - len(arrow), 0)}{arrow}{' ' * (width - filled)}] " \
           f"{_size(done)}/{_size(total)}"


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}TB"
