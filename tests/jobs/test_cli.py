"""`vpsapi jobs …` against a real server, as a terminal user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import ROOT, SHARED_API_KEY


def jobs_cli(args: list[str], base_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "JWT_SECRET": "x" * 40}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "vpsapi",
            "jobs",
            *args,
            "--url",
            base_url,
            "--api-key",
            SHARED_API_KEY,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_submit_watch_list_show_cancel(settings_factory, server_factory, tmp_path: Path) -> None:
    server = server_factory(settings_factory(), JOBS_INPROCESS_WORKERS="true")
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"id": i} for i in range(4)]))
    submitted = jobs_cli(["submit", str(data), "--type", "type1", "--watch"], server.base_url)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split("submitted ", 1)[1].split()[0]
    assert '"status": "COMPLETED"' in submitted.stdout
    listed = jobs_cli(["list"], server.base_url)
    assert listed.returncode == 0 and job_id[:12] in listed.stdout
    shown = jobs_cli(["show", job_id], server.base_url)
    assert json.loads(shown.stdout)["result"]["processed"] == 4
    finished = jobs_cli(["cancel", job_id], server.base_url)
    assert finished.returncode == 1 and "409" in finished.stderr  # already completed


def test_bad_input_exits_non_zero(settings_factory, server_factory, tmp_path: Path) -> None:
    server = server_factory(settings_factory())
    data = tmp_path / "data.json"
    data.write_text("[]")
    empty = jobs_cli(["submit", str(data)], server.base_url)
    assert empty.returncode == 1
    assert "Data array must contain at least one item" in " ".join(empty.stderr.split())
    data.write_text("{not json")
    assert jobs_cli(["submit", str(data)], server.base_url).returncode == 2
    missing = jobs_cli(["show", "job_nope"], server.base_url)
    assert missing.returncode == 1 and "Job not found" in " ".join(missing.stderr.split())
