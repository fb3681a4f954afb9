"""Requests/s and latency of GET /health and an authenticated GET /api/v1/me,
with one and two server processes, measured with wrk (Debian package `wrk`).

    python bench/http_load.py [--duration 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import login, server

REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("P50=%d P99=%d\\n", latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(
    url: str, duration: int, connections: int, token: str | None
) -> tuple[float, float, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if token:
            script.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
        script.write(REPORT)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-s", script.name, "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(script.name).unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50, p99 = (int(x) / 1000 for x in re.search(r"P50=(\d+) P99=(\d+)", out).groups())  # type: ignore[union-attr]
    return rps, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    print(f"{'processes':>9} {'endpoint':<14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for workers in (1, 2):
        with server(workers=workers) as base:
            access = login(base)
            for name, path, token in (
                ("/health", "/health", None),
                ("/api/v1/me", "/api/v1/me", access),
            ):
                run_wrk(base + path, 2, args.connections, token)  # warm-up
                rps, p50, p99 = run_wrk(base + path, args.duration, args.connections, token)
                print(f"{workers:>9} {name:<14} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
