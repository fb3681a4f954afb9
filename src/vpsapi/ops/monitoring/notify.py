"""Alert notifications by email (SMTP settings) and webhook (POST JSON).

Sent in background tasks so a slow mail server never delays sampling; a failure is logged
and never propagates."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
import structlog

from vpsapi.config import Settings
from vpsapi.core.tasks import cancel_and_wait
from vpsapi.ops.monitoring.service import AlertNotice

log = structlog.get_logger("vpsapi.ops.alerts")

SEND_TIMEOUT = 15


class AlertNotifier:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self._tasks: set[asyncio.Task[None]] = set()

    def send_later(self, notice: AlertNotice) -> None:
        task = asyncio.create_task(self.send(notice), name="ops-alert-notify")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Give pending notifications a moment, then drop them."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await cancel_and_wait(*self._tasks)

    async def send(self, notice: AlertNotice) -> None:
        for channel in notice.channels:
            try:
                if channel == "email":
                    await self.send_email(notice)
                elif channel == "webhook":
                    await self.send_webhook(notice)
                log.info(
                    "ops.alert.notified",
                    channel=channel,
                    alert_id=notice.alert["id"],
                    alert_event=notice.event,
                )
            except Exception as exc:
                log.warning(
                    "ops.alert.notify_failed",
                    channel=channel,
                    alert_id=notice.alert["id"],
                    error=f"{type(exc).__name__}: {exc}",
                )

    async def send_email(self, notice: AlertNotice) -> None:
        settings = self.settings
        if not settings.smtp_host:
            raise RuntimeError("SMTP_HOST is not set")
        if not notice.emails:
            raise RuntimeError("no recipients (notification_email or ALERT_EMAIL_TO)")
        alert = notice.alert
        message = EmailMessage()
        message["From"] = settings.smtp_from
        message["To"] = ", ".join(notice.emails)
        message["Subject"] = f"[{alert['severity'].upper()}] {alert['rule_name']} {notice.event}"
        message.set_content(_email_text(notice))
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=password if settings.smtp_username else None,
            start_tls=settings.smtp_starttls,
            timeout=SEND_TIMEOUT,
        )

    async def send_webhook(self, notice: AlertNotice) -> None:
        if not notice.webhook:
            raise RuntimeError("no webhook URL (notification_webhook or ALERT_WEBHOOK_URL)")
        response = await self.http.post(
            notice.webhook, json=webhook_payload(notice), timeout=SEND_TIMEOUT
        )
        response.raise_for_status()


def webhook_payload(notice: AlertNotice) -> dict[str, Any]:
    return {"event": f"alert.{notice.event}", "alert": notice.alert}


def _email_text(notice: AlertNotice) -> str:
    alert = notice.alert
    lines = [
        alert["message"],
        "",
        f"status:    {alert['status']}",
        f"severity:  {alert['severity']}",
        f"metric:    {alert['metric']} = {alert['value']:g}",
        f"condition: {alert['operator']} {alert['threshold']:g}",
        f"fired at:  {alert['timestamp']}",
    ]
    if alert.get("resolved_at"):
        lines.append(f"resolved:  {alert['resolved_at']}")
    lines.append(f"alert id:  {alert['id']}")
    return "\n".join(lines) + "\n"
