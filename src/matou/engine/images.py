"""Docker's image semantics over the image store, with events; blocking store work runs
in worker threads so the daemon's event loop stays responsive."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import IO, Any, BinaryIO

from matou.engine.events import EventBus
from matou.errors import NotFound
from matou.images import create, formats
from matou.images.store import Image, ImageStore
from matou.oci import reference


class ImageService:
    def __init__(self, store: ImageStore, events: EventBus) -> None:
        self.store = store
        self.events = events
        self.lock = asyncio.Lock()  # one writer at a time: gc must not race an unpack

    async def all(self) -> list[Image]:
        return await asyncio.to_thread(self.store.images)

    async def get(self, name: str) -> Image:
        return await asyncio.to_thread(self.store.get, name)

    async def tag(self, name: str, repo: str, tag: str | None) -> str:
        ref = f"{repo}:{tag}" if tag else repo
        async with self.lock:
            img = await asyncio.to_thread(self.store.get, name)
            canonical = await asyncio.to_thread(self.store.tag, name, ref)
        self.events.emit("image", "tag", str(img.id),
                         {"name": reference.parse(canonical).familiar()})
        return canonical

    async def delete(self, name: str, force: bool, in_use: set[str]) -> list[dict[str, str]]:
        async with self.lock:
            out = await asyncio.to_thread(self.store.delete, name, force, in_use)
        for item in out:
            if "Untagged" in item:
                self.events.emit("image", "untag", item["Untagged"], {"name": item["Untagged"]})
            if "Deleted" in item:
                self.events.emit("image", "delete", item["Deleted"], {"name": item["Deleted"]})
        return out

    async def prune(self, dangling_only: bool, in_use: set[str]) -> list[str]:
        async with self.lock:
            deleted = await asyncio.to_thread(self.store.prune, dangling_only, in_use)
        for d in deleted:
            self.events.emit("image", "delete", d, {"name": d})
        return deleted

    async def load(self, stream: BinaryIO) -> list[formats.Loaded]:
        async with self.lock:
            loaded = await asyncio.to_thread(formats.load_archive, self.store, stream)
        for item in loaded:
            name = item.tags[0] if item.tags else str(item.id)
            self.events.emit("image", "load", str(item.id), {"name": name})
        return loaded

    def save(self, names: Sequence[str], out: IO[bytes]) -> None:
        """Blocking: call from a worker thread writing into a pipe."""
        for n in names:
            self.store.get(n)  # 404 before any byte is sent
        formats.save_archive(self.store, names, out)  # type: ignore[arg-type]

    async def import_(self, stream: BinaryIO, changes: Sequence[str], tags: Sequence[str],
                      message: str, source: str) -> Image:
        async with self.lock:
            img = await asyncio.to_thread(create.import_rootfs, self.store, stream, changes,
                                          tags, message, source)
        self.events.emit("image", "import", str(img.id), {"name": str(img.id)})
        return img

    async def history(self, name: str) -> tuple[Image, list[dict[str, Any]]]:
        img = await self.get(name)
        return img, list(img.config.history)

    def exists(self, name: str) -> bool:
        try:
            self.store.get(name)
            return True
        except NotFound:
            return False
