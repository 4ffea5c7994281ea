"""A session's outgoing message queue, bounded for slow readers.

A client that reads slowly must not make the server hold an ever-growing backlog. Tentative
partials are the only messages worth dropping: a newer draft of the same segment replaces an
older one still waiting, and past `limit` the oldest waiting drafts go first. Committed text,
statuses, errors and the final are never dropped (there is at most one committed message per
utterance, so they stay few).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

Message = dict[str, Any]


def _is_draft(message: Message) -> bool:
    return message.get("type") == "partial_transcript" and not message.get("committed")


class Outbox:
    """Messages waiting to be sent to one client."""

    def __init__(self, limit: int = 64, on_drop: Callable[[], None] | None = None) -> None:
        self._items: deque[Message] = deque()
        self._limit = limit
        self._on_drop = on_drop or (lambda: None)
        self._ready = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, message: Message) -> None:
        """Queue a message; ignored once the outbox is closed."""
        if self._closed:
            return
        if _is_draft(message):
            self._drop(lambda m: _is_draft(m) and m["segment_id"] == message["segment_id"])
        self._items.append(message)
        while len(self._items) > self._limit and self._drop(_is_draft, first_only=True):
            pass
        self._empty.clear()
        self._ready.set()

    def _drop(self, matches: Callable[[Message], bool], *, first_only: bool = False) -> bool:
        for index, item in enumerate(self._items):
            if matches(item):
                del self._items[index]
                self._on_drop()
                if first_only:
                    return True
                return self._drop(matches) or True
        return False

    def close(self) -> None:
        """No more messages will be queued; `get()` returns None once the queue is empty."""
        self._closed = True
        self._ready.set()

    async def get(self) -> Message | None:
        """The next message to send, or None when closed and drained."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        message = self._items.popleft()
        if not self._items:
            self._empty.set()
        return message

    async def send_to(self, websocket: WebSocket) -> None:
        """Send the messages as they come until the outbox is closed and drained, or the client is gone."""
        while (message := await self.get()) is not None:
            try:
                await websocket.send_json(message)
            except (WebSocketDisconnect, RuntimeError, OSError):
                return  # the client is gone; the session's receive loop hears of it next

    async def drained(self) -> None:
        """Wait until every queued message has been taken."""
        await self._empty.wait()
