"""The monitoring loop, run by every server process.

Each tick every process reports its own request counts (what changed since its previous
tick) into `ops_app_metric_reports`. One process at a time, the holder of a lease row in
`ops_monitor_lease` (renewed each tick, taken over when it lapses), is the sampler: it
measures the host, adds up the reports, stores the sample, evaluates the alert rules,
sends notifications and publishes `{system, alerts, timestamp}` on the event bus, from
which every process forwards it to its WebSocket clients. The lease lives in the
database, so it works the same on the embedded default and in scale-out. Without Redis
the event bus stays inside one process, so there the other processes (`serve --workers N`)
publish the newest stored sample to their own clients instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from vpsapi.config import Settings
from vpsapi.core.db import Database, utcnow
from vpsapi.core.events import EventBus
from vpsapi.core.http import outbound_client
from vpsapi.core.tasks import cancel_and_wait
from vpsapi.ops.monitoring import service
from vpsapi.ops.monitoring.appmetrics import RequestCounter, latency_bounds, quantile_ms
from vpsapi.ops.monitoring.models import Alert, MetricSample, MonitorLease
from vpsapi.ops.monitoring.notify import AlertNotifier
from vpsapi.ops.monitoring.probe import SystemProbe
from vpsapi.ops.monitoring.schemas import AlertOut, MonitoringMessage

log = structlog.get_logger("vpsapi.ops.monitoring")

CHANNEL = "ops.monitoring"
LEASE_NAME = "sampler"


class MonitoringSampler:
    def __init__(
        self, settings: Settings, db: Database, events: EventBus, http: httpx.AsyncClient
    ) -> None:
        self.settings = settings
        self.db = db
        self.events = events
        self.http = http
        self.interval = settings.metrics_interval
        self.lease_seconds = max(3 * self.interval, 2.0)
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.requests = RequestCounter()
        self.probe = SystemProbe(settings.nginx_status_url)
        self.notifier = AlertNotifier(settings, http)
        self._last_sample: float | None = None
        self._last_forwarded_ms = 0

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed tick is logged; the next one tries again
                log.exception("ops.monitoring.tick_failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def stop(self) -> None:
        await self.notifier.close()
        with contextlib.suppress(Exception):  # let another process take over at once
            async with self.db.session() as session:
                await session.execute(
                    update(MonitorLease)
                    .where(MonitorLease.name == LEASE_NAME, MonitorLease.owner == self.process_id)
                    .values(expires_at=utcnow())
                )

    async def tick(self) -> None:
        counts = self.requests.delta()
        if counts.requests:
            async with self.db.session() as session:
                await service.add_report(session, self.process_id, counts, utcnow())
        if await self.hold_lease():
            await self.sample()
            return
        self._last_sample = None  # rates restart from scratch if the lease comes back
        if not self.settings.redis_url:
            await self.forward_latest()

    async def hold_lease(self) -> bool:
        now = utcnow()
        until = now + timedelta(seconds=self.lease_seconds)
        async with self.db.session() as session:
            result = await session.execute(
                update(MonitorLease)
                .where(
                    MonitorLease.name == LEASE_NAME,
                    or_(MonitorLease.owner == self.process_id, MonitorLease.expires_at < now),
                )
                .values(owner=self.process_id, expires_at=until)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return True
            if await session.get(MonitorLease, LEASE_NAME) is not None:
                return False
        try:
            async with self.db.session() as session:
                session.add(MonitorLease(name=LEASE_NAME, owner=self.process_id, expires_at=until))
        except IntegrityError:  # another process created it first
            return False
        return True

    async def sample(self) -> None:
        now = utcnow()
        clock = time.monotonic()
        elapsed = clock - self._last_sample if self._last_sample is not None else self.interval
        self._last_sample = clock
        values: dict[str, float | None] = await self.probe.read(self.http)
        async with self.db.session() as session:
            counts = await service.take_reports(
                session, now - timedelta(seconds=max(3 * self.interval, elapsed * 2))
            )
            values.update(
                request_figures(counts.requests, counts.errors, counts.latency_buckets, elapsed)
            )
            sample = await service.store_sample(session, values, now)
            notices = await service.evaluate_rules(session, self.settings, values, now)
            active = await service.list_alerts(session, "active", 100)
            # An index range probe: next to nothing when there is nothing to delete.
            cutoff = now - timedelta(days=self.settings.metrics_retention_days)
            await service.purge_samples(session, cutoff)
            message = monitoring_message(sample, active)
        self._last_forwarded_ms = sample.timestamp_ms
        for notice in notices:
            log.warning(
                "ops.alert." + notice.event,
                alert_id=notice.alert["id"],
                message=notice.alert["message"],
            )
            self.notifier.send_later(notice)
        await self.events.publish(CHANNEL, message)

    async def forward_latest(self) -> None:
        """Publish the sampler process's newest sample to this process's subscribers."""
        async with self.db.session() as session:
            latest = await service.recent_samples(session, 1)
            if not latest or latest[0].timestamp_ms <= self._last_forwarded_ms:
                return
            self._last_forwarded_ms = latest[0].timestamp_ms
            message = monitoring_message(
                latest[0], await service.list_alerts(session, "active", 100)
            )
        await self.events.publish(CHANNEL, message)


def request_figures(
    requests: int, errors: int, latency_buckets: list[int], elapsed: float
) -> dict[str, float | None]:
    return {
        "requests_per_second": round(requests / elapsed, 3) if elapsed > 0 else None,
        "error_rate": round(100 * errors / requests, 3) if requests else 0.0,
        "response_time_p95": quantile_ms(latency_buckets, latency_bounds(), 0.95),
    }


def monitoring_message(sample: MetricSample, active: list[Alert]) -> dict[str, Any]:
    snapshot = service.snapshot(sample)
    return MonitoringMessage(
        system=snapshot,
        alerts=[AlertOut.model_validate(alert) for alert in active],
        timestamp=snapshot.timestamp,
    ).model_dump(mode="json")


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> Any:
    async with outbound_client() as http:
        sampler = MonitoringSampler(app.state.settings, app.state.db, app.state.events, http)
        task = asyncio.create_task(sampler.run(), name="ops-monitoring-sampler")
        try:
            yield
        finally:
            await cancel_and_wait(task)
            await sampler.stop()
