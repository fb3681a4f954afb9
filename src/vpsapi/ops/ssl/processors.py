"""The job that runs an ACME order (request-letsencrypt, renew, scheduled renewal)."""

from __future__ import annotations

from typing import Any

from vpsapi.jobs.processors import Report, job_context
from vpsapi.ops.jobs import unseal
from vpsapi.ops.nginx.control import NginxControl
from vpsapi.ops.ssl import acme
from vpsapi.ops.ssl.service import ISSUE_JOB


class IssueCertificate:
    """`data: [{names, email}]` -> `{domain, names, cert_path, key_path, not_after, serial}`."""

    name = ISSUE_JOB
    timeout: int | None = 300
    # Started by the service only, never through POST /api/jobs.
    public = False

    async def process(
        self, items: list[dict[str, Any]], options: dict[str, Any], report: Report
    ) -> dict[str, Any]:
        context = job_context()
        order = unseal(context.settings, self.name, items)
        issued = await acme.issue(
            context.settings,
            NginxControl(context.settings),
            [str(name) for name in order["names"]],
            order.get("email"),
            report,
        )
        return {
            "domain": issued.domain,
            "names": issued.names,
            "cert_path": str(issued.cert_path),
            "key_path": str(issued.key_path),
            "not_after": issued.info.not_after.isoformat(),
            "serial": issued.info.serial,
            "renewal": bool(order.get("renewal")),
        }
