"""Processing types are plug-ins.

A processor is any object with a `name`, an optional `timeout` (seconds) and

    async def process(items: list[dict], options: dict, report: Report) -> dict

where `await report(percent)` publishes progress (0-100). A processor that needs the
service (settings, database, event bus, who submitted the job) reads `job_context()`
while it runs. Processors are found in the entry-point group `vpsapi.processors` (the
built-ins are registered there too, see pyproject.toml) and may also be registered at
run time with `register()`. One with `public = False` can only be submitted by code (its
domain's own endpoint), not through `POST /api/jobs`.
CPU-heavy work belongs in `await asyncio.to_thread(...)` so the event loop stays free.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from vpsapi.core.timestamps import js_now

if TYPE_CHECKING:
    from vpsapi.config import Settings
    from vpsapi.core.db import Database
    from vpsapi.core.events import EventBus

log = structlog.get_logger("vpsapi.jobs")

Report = Callable[[int], Awaitable[None]]
ENTRY_POINT_GROUP = "vpsapi.processors"


class Processor(Protocol):
    name: str
    timeout: int | None

    async def process(
        self, items: list[dict[str, Any]], options: dict[str, Any], report: Report
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class JobContext:
    """What the running job may use of the process it runs in."""

    job_id: str
    owner: str  # who submitted the job: the principal's subject, e.g. "user:<id>"
    settings: Settings
    db: Database
    events: EventBus


_job_context: ContextVar[JobContext] = ContextVar("job_context")


def job_context() -> JobContext:
    """The context of the job running in this task (only inside `process`)."""
    return _job_context.get()


def set_job_context(context: JobContext) -> None:
    _job_context.set(context)


_registry: dict[str, Processor] = {}


def register(processor: Processor) -> None:
    _registry[processor.name] = processor


def unregister(name: str) -> None:
    _registry.pop(name, None)


def get_processor(name: str) -> Processor | None:
    return _registry.get(name)


def processor_names() -> list[str]:
    return sorted(_registry)


def public_processor_names() -> list[str]:
    """Types anyone may submit through the jobs API."""
    return sorted(name for name, p in _registry.items() if getattr(p, "public", True))


def load_entry_points() -> None:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _registry:
            continue
        try:
            loaded = entry.load()
            register(loaded() if isinstance(loaded, type) else loaded)
        except Exception as exc:  # a broken plug-in must not stop the service
            log.error("processor_load_failed", name=entry.name, error=str(exc))


def number_option(options: dict[str, Any], name: str) -> int | float | None:
    """A job option that is a JSON number, else None (the default applies). JSON's true
    and false are no numbers, though Python takes them for 1 and 0."""
    value = options.get(name)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


async def _pause(options: dict[str, Any]) -> None:
    # The seed's sleeps were simulations; `options.delayMs` keeps them for demos.
    delay = number_option(options, "delayMs")
    if delay is not None and delay > 0:
        await asyncio.sleep(min(delay, 60_000) / 1000)  # capped first: float() of 10**400 fails
    else:
        await asyncio.sleep(0)


def _percent(done: int, total: int) -> int:
    return (done * 100) // total


class Type1:
    """Counts items: `{processed, summary}`."""

    name = "type1"
    timeout: int | None = None

    async def process(
        self, items: list[dict[str, Any]], options: dict[str, Any], report: Report
    ) -> dict[str, Any]:
        total = len(items)
        for index in range(total):
            await _pause(options)
            await report(_percent(index + 1, total))
        return {"processed": total, "summary": f"Processed {total} items successfully"}


class Type2:
    """Annotates each item: `{results: [{original, processed}], count}`."""

    name = "type2"
    timeout: int | None = None

    async def process(
        self, items: list[dict[str, Any]], options: dict[str, Any], report: Report
    ) -> dict[str, Any]:
        results = []
        for index, item in enumerate(items):
            await _pause(options)
            stamp = js_now()
            results.append({"original": item, "processed": {**item, "timestamp": stamp}})
            await report(_percent(index + 1, len(items)))
        return {"results": results, "count": len(results)}


class Type3:
    """Processes in batches of `options.batchSize` (default 10):
    `{results, batches, totalProcessed}`."""

    name = "type3"
    timeout: int | None = None

    async def process(
        self, items: list[dict[str, Any]], options: dict[str, Any], report: Report
    ) -> dict[str, Any]:
        size = number_option(options, "batchSize")
        batch_size = size if isinstance(size, int) and size > 0 else 10
        batches = (len(items) + batch_size - 1) // batch_size
        results: list[dict[str, Any]] = []
        for batch_id in range(batches):
            await _pause(options)
            batch = items[batch_id * batch_size : (batch_id + 1) * batch_size]
            results.extend({**item, "batchId": batch_id} for item in batch)
            await report(_percent(batch_id + 1, batches))
        return {"results": results, "batches": batches, "totalProcessed": len(results)}
