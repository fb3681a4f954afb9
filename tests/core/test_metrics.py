"""`/metrics` of `vpsapi serve --workers N`: its own processes added together."""

from __future__ import annotations

import re

import httpx

REQUESTS_LINE = re.compile(
    r'^vpsapi_http_requests_total\{method="GET",route="/api/jobs/\{job_id\}",status="401"\} (\S+)$',
    re.MULTILINE,
)


def unauthorized_reads(base_url: str) -> float:
    text = httpx.get(base_url + "/metrics", timeout=10).text
    return sum(float(value) for value in REQUESTS_LINE.findall(text))


def test_two_servers_sharing_data_dir_keep_their_own_counts(
    settings_factory, server_factory
) -> None:
    # Two multi-process servers on one DATA_DIR, as the systemd template's instances run.
    settings = settings_factory()
    first = server_factory(settings, WORKERS="2")
    for _ in range(6):
        assert httpx.get(first.base_url + "/api/jobs/job_x", timeout=10).status_code == 401
    assert unauthorized_reads(first.base_url) == 6
    second = server_factory(settings, WORKERS="2")
    assert unauthorized_reads(second.base_url) == 0  # not the first one's
    assert unauthorized_reads(first.base_url) == 6  # not wiped by the second's start
