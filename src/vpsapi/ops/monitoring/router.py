"""Metrics, history, alert rules and alerts (seed 002), and `WS /ws/monitoring`."""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Query, Request, WebSocket, status
from starlette.websockets import WebSocketDisconnect

from vpsapi.auth.dependencies import AdminUser, CurrentUser, get_stream_principal
from vpsapi.core.db import Database, SessionDep, shielded_read, utcnow
from vpsapi.core.errors import AppError, Unprocessable
from vpsapi.core.events import Subscription
from vpsapi.core.schemas import AwareUtcDatetime
from vpsapi.core.security import Principal
from vpsapi.core.tasks import cancel_and_wait
from vpsapi.ops.audit.service import actor_name, record_audit
from vpsapi.ops.monitoring import service
from vpsapi.ops.monitoring.models import METRICS
from vpsapi.ops.monitoring.sampler import CHANNEL, monitoring_message
from vpsapi.ops.monitoring.schemas import (
    AlertList,
    AlertOut,
    AlertRuleIn,
    AlertRuleList,
    AlertRuleOut,
    AlertRuleSaved,
    CurrentMetrics,
    Message,
    MetricsHistory,
    MetricsSnapshot,
    MonitoringMessage,
    canonical_metric,
)
from vpsapi.ops.system.service import host_figures

log = structlog.get_logger("vpsapi.ops.monitoring")

# No prefix: it serves /api/monitoring/... and the WebSocket /ws/monitoring.
router = APIRouter(tags=["ops: monitoring"])

RECENT_SAMPLES = 100
HISTORY_DEFAULT_RANGE = timedelta(hours=1)
HISTORY_DEFAULT_POINTS = 360
POLICY_VIOLATION = 1008


@router.get("/api/monitoring/metrics", response_model=CurrentMetrics)
async def current_metrics(_user: CurrentUser, session: SessionDep) -> CurrentMetrics:
    """The newest sample, the recent ones and the active alerts (before the first sample:
    the host figures measured now)."""
    samples = await service.recent_samples(session, RECENT_SAMPLES)
    snapshots = [service.snapshot(sample) for sample in samples]
    current = snapshots[-1] if snapshots else None
    if current is None:
        figures = await asyncio.to_thread(host_figures)
        current = MetricsSnapshot(
            timestamp=utcnow(), **{k: v for k, v in figures.items() if k in METRICS}
        )
    active = await service.list_alerts(session, "active", 100)
    return CurrentMetrics(
        current=current,
        history=snapshots,
        alerts=[AlertOut.model_validate(alert) for alert in active],
    )


@router.get(
    "/api/monitoring/metrics/history",
    response_model=MetricsHistory,
    response_model_by_alias=True,
)
async def metrics_history(
    request: Request,
    _user: CurrentUser,
    session: SessionDep,
    metric: Annotated[
        str | None, Query(max_length=40, description="one metric (default: all)")
    ] = None,
    from_: Annotated[
        AwareUtcDatetime | None, Query(alias="from", description="default: to - 1h")
    ] = None,
    to: Annotated[AwareUtcDatetime | None, Query(description="default: now")] = None,
    step: Annotated[
        int | None, Query(ge=1, le=86400, description="bucket seconds (default: ~360 points)")
    ] = None,
) -> MetricsHistory:
    if metric is not None:
        try:
            metric = canonical_metric(metric)
        except ValueError as exc:
            raise Unprocessable(f"metric: {exc}") from exc
    end = to or utcnow()
    try:
        start = from_ or end - HISTORY_DEFAULT_RANGE
    except OverflowError as exc:  # `to` in the first hour of year 1
        raise Unprocessable("`to` is too early to default `from` to an hour before") from exc
    if step is None:
        span = max((end - start).total_seconds(), 1.0)
        interval = request.app.state.settings.metrics_interval
        step = max(math.ceil(span / HISTORY_DEFAULT_POINTS), math.ceil(interval))
    points = await service.history(session, metric, start, end, step)
    return MetricsHistory(metric=metric, from_=start, to=end, step=step, metrics=points)


# ---- alert rules ----------------------------------------------------------------------


@router.get("/api/monitoring/alerts/rules", response_model=AlertRuleList)
async def list_rules(_user: CurrentUser, session: SessionDep) -> AlertRuleList:
    rules = await service.list_rules(session)
    return AlertRuleList(rules=[AlertRuleOut.model_validate(rule) for rule in rules])


@router.post(
    "/api/monitoring/alerts/rules",
    response_model=AlertRuleSaved,
    status_code=status.HTTP_201_CREATED,
)
async def create_rule(
    body: AlertRuleIn, request: Request, admin: AdminUser, session: SessionDep
) -> AlertRuleSaved:
    rule = await service.create_rule(session, request.app.state.settings, admin, body)
    out = AlertRuleOut.model_validate(rule)
    await record_audit(
        session, admin, "monitoring.rule.create", rule.id, after=out.model_dump(mode="json")
    )
    return AlertRuleSaved(message="Alert rule created successfully", rule=out)


@router.put("/api/monitoring/alerts/rules/{rule_id}", response_model=AlertRuleSaved)
async def update_rule(
    rule_id: str, body: AlertRuleIn, request: Request, admin: AdminUser, session: SessionDep
) -> AlertRuleSaved:
    before = service.rule_out(await service.get_rule(session, rule_id))
    rule = await service.update_rule(
        session, request.app.state.settings, rule_id, body, actor_name(admin)
    )
    out = AlertRuleOut.model_validate(rule)
    await record_audit(
        session,
        admin,
        "monitoring.rule.update",
        rule.id,
        before=before,
        after=out.model_dump(mode="json"),
    )
    return AlertRuleSaved(message="Alert rule updated successfully", rule=out)


@router.delete("/api/monitoring/alerts/rules/{rule_id}", response_model=Message)
async def delete_rule(rule_id: str, admin: AdminUser, session: SessionDep) -> Message:
    before = service.rule_out(await service.get_rule(session, rule_id))
    await service.delete_rule(session, rule_id, actor_name(admin))
    await record_audit(session, admin, "monitoring.rule.delete", rule_id, before=before)
    return Message(message="Alert rule deleted successfully")


# ---- alerts -----------------------------------------------------------------------------


@router.get("/api/monitoring/alerts", response_model=AlertList)
async def list_alerts(
    _user: CurrentUser,
    session: SessionDep,
    status_filter: Annotated[Literal["active", "resolved"] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertList:
    alerts = await service.list_alerts(session, status_filter, limit)
    return AlertList(alerts=[AlertOut.model_validate(alert) for alert in alerts])


@router.post("/api/monitoring/alerts/{alert_id}/resolve", response_model=Message)
async def resolve_alert(alert_id: str, admin: AdminUser, session: SessionDep) -> Message:
    alert = await service.resolve_alert(session, alert_id, actor_name(admin))
    await record_audit(
        session,
        admin,
        "monitoring.alert.resolve",
        alert.id,
        after={"status": alert.status, "resolved_by": alert.resolved_by},
    )
    return Message(message="Alert resolved successfully")


# ---- WebSocket ----------------------------------------------------------------------------


async def websocket_principal(websocket: WebSocket) -> Principal | None:
    """The same credentials as SSE: `Authorization` header or `?access_token=` (a JWT)."""
    state = websocket.app.state
    try:
        async with state.db.session() as session:
            principal = await get_stream_principal(websocket, session, state.codec)
    except AppError:
        return None
    return principal if principal.user_id is not None else None


@router.websocket("/ws/monitoring")
async def monitoring_socket(websocket: WebSocket) -> None:
    """Sends `{type: "metrics", system: {...}, alerts: [...], timestamp}` per sample."""
    principal = await websocket_principal(websocket)
    await websocket.accept()
    if principal is None:
        await websocket.close(code=POLICY_VIOLATION, reason="Authentication required")
        return
    async with websocket.app.state.events.subscribe(CHANNEL) as subscription:
        sender = asyncio.create_task(_forward(websocket, subscription))
        try:
            # The client may send anything (pings); only its close matters.
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            await cancel_and_wait(sender)


async def _latest_message(db: Database) -> dict[str, Any]:
    """The message of the newest stored sample; before the first sample, of the host
    measured now, as GET /api/monitoring/metrics does."""
    async with db.session(autocommit=True) as session:
        latest = await service.recent_samples(session, 1)
        active = await service.list_alerts(session, "active", 100)
    if latest:
        return monitoring_message(latest[0], active)
    figures = await asyncio.to_thread(host_figures)
    snapshot = MetricsSnapshot(
        timestamp=utcnow(), **{k: v for k, v in figures.items() if k in METRICS}
    )
    message = MonitoringMessage(
        system=snapshot,
        alerts=[AlertOut.model_validate(alert) for alert in active],
        timestamp=snapshot.timestamp,
    )
    return message.model_dump(mode="json")


async def _forward(websocket: WebSocket, subscription: Subscription) -> None:
    # A client that left ends the sender quietly: the receiving side closes the socket.
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await _forward_samples(websocket, subscription)


async def _forward_samples(websocket: WebSocket, subscription: Subscription) -> None:
    # The newest sample at once (a dashboard would otherwise wait up to a whole
    # METRICS_INTERVAL); read after subscribing, so no sample falls in between.
    sent: datetime | None = None
    try:
        with shielded_read():  # the client may leave meanwhile
            first = await _latest_message(websocket.app.state.db)
    except Exception as exc:  # the database is away: the next sample still comes
        log.warning("ops.monitoring.ws_first_sample_failed", error=str(exc))
    else:
        await websocket.send_json(first)
        sent = datetime.fromisoformat(first["timestamp"])
    while True:
        message = await subscription.get(timeout=30)
        if message is not None:
            moment = datetime.fromisoformat(message["timestamp"])
            # Timestamps only go forward: the sample sent on connect (published while it
            # was read) or one measured before it is not sent (again).
            if sent is not None and moment <= sent:
                continue
            sent = moment
            await websocket.send_json(message)
        elif subscription.lost:
            subscription.lost = False  # a missed sample is simply skipped
