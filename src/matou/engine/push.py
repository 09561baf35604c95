"""`docker push`: an image of the store to a registry, with Docker's progress stream.

The layers go as they are in the content store: the compressed blobs of a pulled or
loaded image (its stored manifest is pushed unchanged, so its digest stays the same), or
the uncompressed layer tars of an image made here (busybox, commit, import) under a new
OCI manifest. A blob the registry has is not sent again; one that another repository of
the same registry has (the store remembers where each blob was pulled from and pushed
to) is mounted from there; large blobs go up in chunks, with progress.

May import: images, registry, oci, errors (and stdlib).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from matou.images.store import ImageStore, make_manifest
from matou.oci import image as oci
from matou.oci import reference
from matou.oci.digest import Digest
from matou.registry.client import Credentials, Pusher, Registry, insecure

Emit = Callable[[dict[str, Any]], Awaitable[None]]


async def _chunks(store: ImageStore, digest: Digest,
                  sent: Callable[[int], Awaitable[None]] | None = None
                  ) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(store.content.open, digest)
    done = 0
    try:
        while chunk := await asyncio.to_thread(f.read, 1 << 20):
            yield chunk
            done += len(chunk)
            if sent is not None:
                await sent(done)
    finally:
        f.close()


async def push(store: ImageStore, text: str, emit: Emit, creds: Credentials | None = None,
               insecure_registries: tuple[str, ...] = ()) -> str:
    """Push ``text`` (NAME[:TAG]); returns the manifest digest."""
    ref = reference.parse(text)
    image = await asyncio.to_thread(store.get, str(ref))
    config_bytes = await asyncio.to_thread(store.content.read, image.id)
    config = oci.parse_config(config_bytes)
    stored = await asyncio.to_thread(store.manifest, image)
    if stored is not None and image.manifest is not None:
        layers = list(stored.layers)
        manifest_bytes = await asyncio.to_thread(store.content.read, image.manifest)
        media_type = stored.media_type or oci.OCI_MANIFEST
        config_desc = stored.config
    else:
        layers = [oci.descriptor(oci.OCI_LAYER, d, store.content.size(d))
                  for d in config.rootfs_diff_ids]
        manifest_bytes = make_manifest(config_bytes, layers)
        media_type = oci.OCI_MANIFEST
        config_desc = oci.descriptor(oci.OCI_CONFIG, image.id, len(config_bytes))
    reg = Registry(ref.domain, insecure(ref.domain, insecure_registries), creds)
    target = Pusher(reg, ref.path)
    try:
        shown = ref.name if ref.domain != "docker.io" else ref.familiar_name
        await emit({"status": f"The push refers to repository [{shown}]"})
        shorts = [d.short for d in config.rootfs_diff_ids]
        for s in reversed(shorts):
            await emit({"status": "Preparing", "progressDetail": {}, "id": s})
        here = f"{ref.domain}/{ref.path}"
        for layer, s in reversed(list(zip(layers, shorts, strict=True))):
            if await target.has(str(layer.digest)):
                await emit({"status": "Layer already exists", "progressDetail": {}, "id": s})
                continue
            # another repository of this registry has it: link it instead of uploading
            # (one try; when refused, the registry's answer starts the upload)
            started, mounted_from = None, ""
            for where in await asyncio.to_thread(store.sources, layer.digest):
                host, _, repo = where.partition("/")
                if host == ref.domain and repo != ref.path:
                    started = await target.mount(str(layer.digest), repo)
                    mounted_from = repo if started is None else ""
                    break
            if mounted_from:
                await emit({"status": f"Mounted from {mounted_from}", "progressDetail": {},
                            "id": s})
                continue

            async def sent(done: int, s: str = s, total: int = layer.size) -> None:
                await emit({"status": "Pushing", "id": s,
                            "progressDetail": {"current": done, "total": total}})

            await sent(0)
            for attempt in range(1, 4):  # a broken connection: the blob again, anew
                try:
                    await target.upload(str(layer.digest), layer.size,
                                        _chunks(store, layer.digest, sent), started)
                    break
                except (ConnectionError, TimeoutError):
                    if attempt == 3:
                        raise
                    started = None
                    await emit({"status": f"Retrying in {attempt} second"
                                          f"{'s' if attempt > 1 else ''}",
                                "progressDetail": {}, "id": s})
                    await asyncio.sleep(attempt)
            await emit({"status": "Pushed", "progressDetail": {}, "id": s})
        if not await target.has(str(config_desc.digest)):
            await target.upload(str(config_desc.digest), config_desc.size,
                                _chunks(store, config_desc.digest))
        await asyncio.to_thread(store.add_source,
                                [x.digest for x in layers] + [config_desc.digest], here)
        tag = ref.tag or "latest"
        digest = await target.manifest(tag, manifest_bytes, media_type)
        await asyncio.to_thread(store.add_repo_digest, image.id, f"{ref.name}@{digest}")
        await emit({"status": f"{tag}: digest: {digest} size: {len(manifest_bytes)}"})
        await emit({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest,
                                                  "Size": len(manifest_bytes)}})
        return digest
    finally:
        await reg.close()
