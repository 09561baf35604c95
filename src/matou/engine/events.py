"""The event bus: what `docker events` shows, kept in a bounded history and fanned out
to live subscribers (each an asyncio queue), with Docker's filters."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import NamedTuple

HISTORY = 1024


class Event(NamedTuple):
    type: str                  # container, image, volume, network, daemon
    action: str
    actor_id: str
    attributes: dict[str, str]
    time_nano: int

    def matches(self, filters: dict[str, list[str]]) -> bool:
        checks = {
            "type": [self.type],
            "event": [self.action, self.action.split(":")[0]],
            "image": [self.actor_id, self.attributes.get("name", "")] if self.type == "image"
            else [self.attributes.get("image", "")],
            "container": [self.actor_id, self.attributes.get("name", "")]
            if self.type == "container" else [],
        }
        for key, wanted in filters.items():
            if key == "label":
                for w in wanted:
                    k, _, v = w.partition("=")
                    if k not in self.attributes or (v and self.attributes[k] != v):
                        return False
                continue
            have = checks.get(key)
            if have is None:
                continue
            if not any(w in have or (len(w) >= 12 and any(h.startswith(w) for h in have))
                       for w in wanted):
                return False
        return True


class EventBus:
    def __init__(self) -> None:
        self.history: deque[Event] = deque(maxlen=HISTORY)
        self.subscribers: set[asyncio.Queue[Event]] = set()

    def emit(self, type_: str, action: str, actor_id: str,
             attributes: dict[str, str] | None = None) -> Event:
        ev = Event(type_, action, actor_id, dict(attributes or {}), time.time_ns())
        self.history.append(ev)
        for q in list(self.subscribers):
            q.put_nowait(ev)
        return ev

    async def stream(self, since: int | None, until: int | None,
                     filters: dict[str, list[str]]) -> AsyncIterator[Event]:
        """Past events from ``since`` (ns), then live ones until ``until`` (ns) if given."""
        q: asyncio.Queue[Event] = asyncio.Queue()
        self.subscribers.add(q)
        try:
            now = time.time_ns()
            if since is not None:
                for ev in list(self.history):
                    if ev.time_nano >= since and (until is None or ev.time_nano <= until) \
                            and ev.matches(filters):
                        yield ev
            if until is not None and until <= now:
                return
            while True:
                timeout = None if until is None else max(0.0, (until - time.time_ns()) / 1e9)
                try:
                    ev = await asyncio.wait_for(q.get(), timeout)
                except TimeoutError:
                    return
                if until is not None and ev.time_nano > until:
                    return
                if ev.matches(filters):
                    yield ev
        finally:
            self.subscribers.discard(q)
