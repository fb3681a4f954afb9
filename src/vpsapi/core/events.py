"""Publish/subscribe between code paths and processes.

In-process by default; over Redis pub/sub when REDIS_URL is set, so an event
published in any process (a worker reporting progress, say) reaches every
subscriber in every process. One Redis connection per process carries all
channels; local subscribers each get a bounded queue.

Delivery is at-most-once: a subscriber whose queue overflowed, or whose Redis
link dropped, sees `Subscription.lost` set and must re-read the source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from redis.asyncio import Redis

from vpsapi.core.tasks import cancel_and_wait

log = structlog.get_logger("vpsapi.events")

QUEUE_SIZE = 256


class Subscription:
    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.lost = False
        self.signal = asyncio.Event()

    def deliver(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.lost = True
        self.signal.set()

    def mark_lost(self) -> None:
        self.lost = True
        self.signal.set()

    async def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Next message, or None on timeout or when messages were lost (check `lost`)."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        self.signal.clear()
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can lose a cancellation.
            async with asyncio.timeout(timeout):
                await self.signal.wait()
        except TimeoutError:
            return None
        if not self.queue.empty():
            return self.queue.get_nowait()
        return None


class EventBus:
    """In-process bus; also the local fan-out used by the Redis bus."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        self._fan_out(channel, message)

    def _fan_out(self, channel: str, message: dict[str, Any]) -> None:
        for sub in tuple(self._subs.get(channel, ())):
            sub.deliver(message)

    async def _on_first_subscriber(self, channel: str) -> None:
        return None

    async def _on_last_unsubscribe(self, channel: str) -> None:
        return None

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        sub = Subscription(channel)
        subs = self._subs.setdefault(channel, set())
        subs.add(sub)
        if len(subs) == 1:
            await self._on_first_subscriber(channel)
        try:
            yield sub
        finally:
            subs.discard(sub)
            if not subs:
                self._subs.pop(channel, None)
                await self._on_last_unsubscribe(channel)

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())


class RedisEventBus(EventBus):
    def __init__(self, redis: Redis, prefix: str) -> None:
        super().__init__()
        self._redis = redis
        self._prefix = prefix + ":ev:"
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._reader = asyncio.create_task(self._read_loop(), name="events-reader")

    async def close(self) -> None:
        if self._reader:
            await cancel_and_wait(self._reader)
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        await self._redis.publish(self._prefix + channel, json.dumps(message, default=str))

    async def _on_first_subscriber(self, channel: str) -> None:
        async with self._lock:
            try:
                await self._pubsub.subscribe(self._prefix + channel)
            except Exception as exc:  # the reader re-subscribes when Redis returns
                log.warning("events_subscribe_failed", channel=channel, error=str(exc))
                for sub in self._subs.get(channel, ()):
                    sub.mark_lost()

    async def _on_last_unsubscribe(self, channel: str) -> None:
        async with self._lock:
            with contextlib.suppress(Exception):
                await self._pubsub.unsubscribe(self._prefix + channel)

    async def _read_loop(self) -> None:
        backoff = 0.1
        reconnect = False
        while True:
            try:
                if reconnect:
                    await self._resubscribe()
                    reconnect = False
                if not self._pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    continue
                message = await self._pubsub.get_message(timeout=1.0)
                backoff = 0.1
                if message is None or message.get("type") != "message":
                    continue
                channel = message["channel"].decode().removeprefix(self._prefix)
                self._fan_out(channel, json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("events_redis_lost", error=str(exc))
                for subs in self._subs.values():
                    for sub in subs:
                        sub.mark_lost()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                reconnect = True

    async def _resubscribe(self) -> None:
        async with self._lock:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            channels = [self._prefix + c for c in self._subs]
            if channels:
                await self._pubsub.subscribe(*channels)
