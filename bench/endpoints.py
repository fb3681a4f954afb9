"""CPU cost per request of the soak's operations, one endpoint at a time, on one server.

    python bench/endpoints.py [--seconds 8] [--rate-limit] [health info status list token submit]

Starts, on 127.0.0.1 only: a fresh PostgreSQL database on the machine's server, a Redis key
prefix and one `vpsapi serve` (no workers inside: submitted jobs stay pending), then drives
each endpoint with wrk (1 thread, 16 connections) until the server is saturated, and prints
requests/s and the server's CPU milliseconds per request. `--rate-limit` turns the rate
limiter on (counted in Redis, as in production) with a limit no run reaches. Stops
everything by PID.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from common import API_KEY, free_port, scaleout_setup, start, wait_live

JOB = {"processingType": "type1", "data": [{"i": 1}, {"i": 2}]}


def wrk(url: str, seconds: int, headers: dict[str, str], body: str | None) -> tuple[int, int]:
    """Requests made and how many were not 2xx/3xx."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        for name, value in headers.items():
            script.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
        if body is not None:
            script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n')
    out = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(script.name).unlink()
    made = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return made, int(failed.group(1)) if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rate-limit", action="store_true")
    parser.add_argument("only", nargs="*", help="endpoints to measure (default: all)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")

    limiter = {"RATE_LIMIT_ENABLED": "true", "RATE_LIMIT_DEFAULT": "1000000000/minute"}
    with scaleout_setup("endpoints", **(limiter if args.rate_limit else {})) as setup:
        tmp, env = setup.directory, setup.env
        port = free_port()
        server = start(["serve", "--port", str(port)], env, tmp / "serve.log")
        try:
            base = f"http://127.0.0.1:{port}"
            wait_live(base, server)
            token = httpx.post(base + "/api/auth/token", headers={"X-API-Key": API_KEY})
            bearer = {"Authorization": f"Bearer {token.json()['token']}"}
            job_id = httpx.post(base + "/api/jobs", json=JOB, headers=bearer).json()["jobId"]
            for _ in range(30):  # a list page of 20
                httpx.post(base + "/api/jobs", json=JOB, headers=bearer)
            as_json = {**bearer, "Content-Type": "application/json"}
            cases: dict[str, tuple[str, dict[str, str], str | None]] = {
                "health": ("/health/live", {}, None),
                "info": ("/api/v1/info", {}, None),
                "status": (f"/api/jobs/{job_id}", bearer, None),
                "list": ("/api/jobs?limit=20", bearer, None),
                "token": ("/api/auth/token", {"X-API-Key": API_KEY}, ""),
                "submit": ("/api/jobs", as_json, json.dumps(JOB)),
            }
            limiter = "on (Redis)" if args.rate_limit else "off"
            print(f"one serve, PostgreSQL + Redis, rate limiter {limiter}")
            print(f"{'endpoint':<8} {'req/s':>7} {'CPU ms/req':>11} {'not 2xx':>8}")
            process = psutil.Process(server.pid)
            for name, (path, headers, body) in cases.items():
                if args.only and name not in args.only:
                    continue
                wrk(base + path, 1, headers, body)  # warm-up
                cpu_before, started = sum(process.cpu_times()[:2]), time.perf_counter()
                made, failed = wrk(base + path, args.seconds, headers, body)
                cpu = sum(process.cpu_times()[:2]) - cpu_before
                rate = made / (time.perf_counter() - started)
                print(f"{name:<8} {rate:>7.0f} {cpu / made * 1000:>11.3f} {failed:>8}", flush=True)
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
