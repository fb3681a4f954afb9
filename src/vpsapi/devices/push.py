"""Push tokens of the users' phones, and alarm notifications delivered to them as jobs.

An alarm event becomes one `push` job per (owner, token): each delivery is retried on
its own by the job engine, and a token its provider reports gone is deleted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.auth.service import token_revoked
from vpsapi.config import Settings
from vpsapi.core.db import Database, is_deleted_meanwhile
from vpsapi.core.security import Principal
from vpsapi.core.timestamps import js_iso
from vpsapi.devices.models import Device, PushToken, UserDevice
from vpsapi.devices.push_providers import Notification, Outcome, PushProviders, providers_for
from vpsapi.jobs import service as jobs_service
from vpsapi.jobs.processors import Report, job_context
from vpsapi.jobs.schemas import JobSubmit

PUSH_JOB_TYPE = "push"
# Push jobs belong to the system, not to a user: only admins see them in /api/jobs.
PUSH_JOB_OWNER = Principal(kind="client", subject="system:push", role="user")
ALARM_TEXT = {
    "motion": "Motion detected",
    "human": "Person detected",
    "pir": "Movement detected (PIR sensor)",
    "sound": "Sound detected",
    "face": "Face detected",
    "cry": "Crying detected",
    "doorbell": "Someone rang the doorbell",
}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def save_token(session: AsyncSession, user_id: str, platform: str, token: str) -> None:
    """Register `token` for `user_id`; a token seen before moves to its latest user."""
    digest = _hash(token)
    for _ in range(2):
        existing = (
            await session.execute(select(PushToken).where(PushToken.token_hash == digest))
        ).scalar_one_or_none()
        try:
            async with session.begin_nested():
                if existing is None:
                    session.add(
                        PushToken(
                            user_id=user_id, platform=platform, token=token, token_hash=digest
                        )
                    )
                else:
                    existing.user_id = user_id
                    existing.platform = platform
            return
        except IntegrityError as exc:
            if is_deleted_meanwhile(exc):  # the user, since their token was read
                raise token_revoked() from exc
            continue  # the token registered by a concurrent request: update that row


async def delete_token(session: AsyncSession, user_id: str, token: str) -> bool:
    result = await session.execute(
        delete(PushToken).where(PushToken.token_hash == _hash(token), PushToken.user_id == user_id)
    )
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True)
class Alarm:
    alarm_type: str
    at: datetime
    video_id: str | None = None


async def notify_owners(
    session: AsyncSession, settings: Settings, device: Device, alarm: Alarm
) -> list[str]:
    """Queue one delivery job per token of every owner; returns the job ids. Tokens
    whose platform has no configured provider are skipped."""
    providers = providers_for(settings)
    rows = await session.execute(
        select(UserDevice.name, PushToken.id, PushToken.platform)
        .join(PushToken, PushToken.user_id == UserDevice.user_id)
        .where(UserDevice.device_id == device.id)
        .order_by(PushToken.id)
    )
    text = ALARM_TEXT.get(alarm.alarm_type, f"Alarm: {alarm.alarm_type}")
    data = {
        "vid": device.virtual_id,
        "alarmType": alarm.alarm_type,
        "time": js_iso(alarm.at),
    }
    if alarm.video_id:
        data["videoId"] = alarm.video_id
    job_ids = []
    for device_name, token_id, platform in rows.tuples():
        if providers.for_platform(platform) is None:
            continue
        item = {"tokenId": token_id, "title": device_name, "body": text, "data": data}
        job, _ = await jobs_service.submit_job(
            session,
            settings,
            PUSH_JOB_OWNER,
            # `push` is not a public type (POST /api/jobs refuses it): skip that check.
            JobSubmit.model_construct(processingType=PUSH_JOB_TYPE, data=[item], options={}),
            idempotency_key=None,
        )
        job_ids.append(job.id)
    return job_ids


async def deliver(db: Database, providers: PushProviders, item: dict[str, Any]) -> dict[str, Any]:
    """Send one notification to one stored token; delete the token if it is gone."""
    async with db.session() as session:
        token = await session.get(PushToken, item["tokenId"])
    if token is None:
        return {"tokenId": item["tokenId"], "outcome": "token_deleted"}
    provider = providers.for_platform(token.platform)
    if provider is None:
        return {"tokenId": token.id, "outcome": "no_provider"}
    note = Notification(title=item["title"], body=item["body"], data=item["data"])
    outcome = await provider.send(token.token, token.platform, note)
    if outcome is Outcome.INVALID_TOKEN:
        async with db.session() as session:
            await session.execute(
                delete(PushToken).where(
                    PushToken.id == token.id, PushToken.token_hash == token.token_hash
                )
            )
    return {"tokenId": token.id, "provider": provider.name, "outcome": outcome.value}


class PushDelivery:
    """The `push` job type (entry point in pyproject.toml): items are
    `{tokenId, title, body, data}`; transient provider errors fail the attempt so the
    engine retries it with backoff."""

    name = PUSH_JOB_TYPE
    timeout: int | None = 60
    # Started by the service only, never through POST /api/jobs.
    public = False

    async def process(
        self, items: list[dict[str, Any]], options: dict[str, Any], report: Report
    ) -> dict[str, Any]:
        job = job_context()
        providers = providers_for(job.settings)
        results = []
        for index, item in enumerate(items):
            results.append(await deliver(job.db, providers, item))
            await report((index + 1) * 100 // len(items))
        return {"results": results}
