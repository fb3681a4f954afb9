"""Push tokens of the users' phones (registration only; delivery is not built yet)."""

from __future__ import annotations

import hashlib

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.devices.models import PushToken


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
        except IntegrityError:
            continue


async def delete_token(session: AsyncSession, user_id: str, token: str) -> bool:
    result = await session.execute(
        delete(PushToken).where(PushToken.token_hash == _hash(token), PushToken.user_id == user_id)
    )
    return bool(getattr(result, "rowcount", 0))
