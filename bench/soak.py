"""Soak: a mixed workload at a fixed arrival rate through nginx against the scale-out setup.

    python bench/soak.py --rate 300 --duration 60
    python bench/soak.py --rate 1000 --duration 300     # the issue's aim

Starts, on 127.0.0.1 only: a fresh PostgreSQL database on the machine's server, a Redis key
prefix, 2 `vpsapi serve` + 2 `vpsapi worker` processes and a private nginx running the
repository's own site file (deploy/nginx/vpsapi.conf). The client is aiohttp on uvloop:
it shares the cores with what it measures, so it must be cheap. Requests arrive open-loop (a
new one every 1/rate s whatever the answers do), mixed as below. Prints throughput, p50/p99 per
operation (the client's, and the servers' own from their access logs: where the two differ,
the time went in the client, nginx or the queue before the server), errors, and the RSS of
every process at start and end with its CPU use (nginx:
the master, its workers on a line of their own; PostgreSQL and Redis: all of their processes,
which other work on the machine may share). Stops everything by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import uvloop
from common import API_KEY, ROOT, free_port, pg_value, scaleout_setup, start, wait_live

sys.path.insert(0, str(ROOT / "tests"))
from support import render_nginx_site

# operation -> share of requests
MIX = {
    "token": 0.05,
    "submit": 0.15,
    "status": 0.35,
    "list": 0.25,
    "info": 0.15,
    "sse_follow": 0.05,
}
MAX_IN_FLIGHT = 4000


def rss_mib(process: psutil.Process) -> float:
    try:
        return process.memory_info().rss / 2**20
    except psutil.Error:
        return float("nan")


def shared_servers_cpu() -> dict[str, dict[int, float]]:
    """CPU seconds per process of the servers the setup shares with the machine (all of
    their processes: PostgreSQL backends come and go with the pools)."""
    groups: dict[str, dict[int, float]] = {"postgresql": {}, "redis": {}}
    for proc in psutil.process_iter(["name"]):
        name = proc.info["name"] or ""
        group = "postgresql" if name.startswith("postgres") else "redis" if "redis" in name else ""
        if group:
            groups[group][proc.pid] = cpu_seconds(proc)
    return groups


def cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return float("nan")
    return float(times.user + times.system)


class Soak:
    def __init__(self, base: str, servers: list[psutil.Process]) -> None:
        self.base = base
        self.servers = servers  # their RSS goes into every period's line
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.job_ids: list[str] = []
        self.token = ""

    async def run_op(self, http: aiohttp.ClientSession, op: str) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        started = time.perf_counter()
        if op in ("status", "sse_follow") and not self.job_ids:
            op = "info"
        if op == "sse_follow":
            await self.follow(http, self.job_ids[-1], started)
            return
        request: dict[str, Any] = {
            "token": {
                "method": "POST",
                "url": "/api/auth/token",
                "headers": {"X-API-Key": API_KEY},
            },
            "submit": {
                "method": "POST",
                "url": "/api/jobs",
                "json": {"processingType": "type1", "data": [{"i": 1}, {"i": 2}]},
                "headers": headers,
            },
            "status": {
                "method": "GET",
                "url": f"/api/jobs/{random.choice(self.job_ids[-500:])}" if self.job_ids else "",
                "headers": headers,
            },
            "list": {"method": "GET", "url": "/api/jobs?limit=20", "headers": headers},
            "info": {"method": "GET", "url": "/api/v1/info"},
        }[op]
        try:
            async with http.request(**request) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[op].append(type(exc).__name__)
            return
        self.latency[op].append(time.perf_counter() - started)
        if status >= 400:
            self.errors[op].append(str(status))
        elif op == "submit":
            self.job_ids.append(json.loads(body)["jobId"])

    async def follow(self, http: aiohttp.ClientSession, job_id: str, started: float) -> None:
        """Open the job's SSE stream and read to its terminal event; latency = whole follow."""
        url = f"/api/sse/job-progress/{job_id}?access_token={self.token}"
        terminal = ("COMPLETED", "FAILED", "CANCELLED")
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=60)) as stream:
                if stream.status != 200:
                    self.errors["sse_follow"].append(str(stream.status))
                    return
                async for raw in stream.content:
                    line = raw.decode().strip()
                    if line.startswith("data:") and json.loads(line[5:]).get("status") in terminal:
                        break
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors["sse_follow"].append(type(exc).__name__)
            return
        self.latency["sse_follow"].append(time.perf_counter() - started)

    async def drive(self, rate: float, duration: float) -> float:
        connector = aiohttp.TCPConnector(limit=512, ssl=False)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(self.base, connector=connector, timeout=timeout) as http:
            async with http.post("/api/auth/token", headers={"X-API-Key": API_KEY}) as response:
                self.token = (await response.json())["token"]
            ops, weights = list(MIX), list(MIX.values())
            tasks: set[asyncio.Task[None]] = set()
            started = time.perf_counter()
            sent = 0
            reporter = asyncio.create_task(self.report_every(30.0, tasks))
            while (now := time.perf_counter() - started) < duration:
                due = int(now * rate) - sent
                for _ in range(due):
                    if len(tasks) >= MAX_IN_FLIGHT:
                        self.errors["client"].append("in-flight cap")
                        continue
                    task = asyncio.create_task(self.run_op(http, random.choices(ops, weights)[0]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                sent += due
                await asyncio.sleep(0.002)
            if tasks:
                await asyncio.wait(tasks, timeout=60)
            reporter.cancel()
            return time.perf_counter() - started

    async def report_every(self, seconds: float, in_flight: set[asyncio.Task[None]]) -> None:
        """A line per period: a slow decline shows here, not in the totals."""
        print(
            f"{'at s':>6} {'done/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'in flight':>9}"
            "  serve RSS MiB"
        )
        reported: dict[str, int] = {}
        errors_seen, begun = 0, time.perf_counter()
        while True:
            await asyncio.sleep(seconds)
            latest = sorted(
                value
                for op, values in self.latency.items()
                for value in values[reported.get(op, 0) :]
            )
            reported = {op: len(values) for op, values in self.latency.items()}
            errors = sum(len(v) for v in self.errors.values())
            p50 = latest[len(latest) // 2] * 1000 if latest else float("nan")
            p99 = latest[int(len(latest) * 0.99)] * 1000 if latest else float("nan")
            print(
                f"{time.perf_counter() - begun:>6.0f} {len(latest) / seconds:>7.0f} {p50:>8.1f}"
                f" {p99:>8.1f} {errors - errors_seen:>7} {len(in_flight):>9}  "
                + " ".join(f"{rss_mib(server):.1f}" for server in self.servers),
                flush=True,
            )
            errors_seen = errors


def operation_of(method: str, path: str) -> str | None:
    """The soak operation an access-log line records (None: an SSE stream, whose duration
    is the job's, or anything else)."""
    if path == "/api/auth/token":
        return "token"
    if path == "/api/jobs":
        return "submit" if method == "POST" else "list"
    if path.startswith("/api/jobs/"):
        return "status"
    if path == "/api/v1/info":
        return "info"
    return None


def server_latency(log_dir: Path) -> dict[str, list[float]]:
    """Seconds per operation as the serve processes measured them (their access logs)."""
    measured: dict[str, list[float]] = defaultdict(list)
    for log in log_dir.glob("performance.log*"):
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
                op = operation_of(entry["method"], entry["path"])
            except (ValueError, KeyError, TypeError):
                continue
            if op is not None:
                measured[op].append(entry["duration_ms"] / 1000)
    return measured


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return (
        statistics.median(ordered) * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )


def report(soak: Soak, elapsed: float, served: dict[str, list[float]]) -> None:
    total = sum(len(v) for v in soak.latency.values())
    errors = sum(len(v) for v in soak.errors.values())
    print(f"\n{total} requests in {elapsed:.1f} s = {total / elapsed:.0f} req/s, {errors} errors")
    print(
        f"{'operation':<12} {'count':>7} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}"
        f"   server-side p50 / p99 ms"
    )
    for op in MIX:
        values = soak.latency.get(op, [])
        if not values:
            continue
        p50, p99 = percentiles(values)
        line = f"{op:<12} {len(values):>7} {p50:>9.1f} {p99:>9.1f} {len(soak.errors[op]):>7}"
        if served.get(op):
            line += "   {:>9.1f} / {:.1f}".format(*percentiles(served[op]))
        print(line)
    for op, kinds in soak.errors.items():
        if kinds:
            common = defaultdict(int)
            for kind in kinds:
                common[kind] += 1
            print(f"  errors {op}: {dict(common)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300, help="requests per second")
    parser.add_argument("--duration", type=float, default=60, help="seconds")
    args = parser.parse_args()

    # Every access-log line is kept (LOG_BACKUP_COUNT), for the server-side figures.
    with scaleout_setup("soak", JOBS_WORKERS="8", LOG_BACKUP_COUNT="100") as setup:
        tmp, env = setup.directory, setup.env
        ports = [free_port(), free_port()]
        processes = [
            start(["serve", "--port", str(port)], env, tmp / f"serve{port}.log") for port in ports
        ]
        processes += [start(["worker"], env, tmp / f"worker{i}.log") for i in range(2)]
        nginx_port = free_port()
        conf = render_nginx_site(tmp, [f"127.0.0.1:{port}" for port in ports], nginx_port)
        nginx = subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(conf)])
        try:
            for port in ports:
                wait_live(f"http://127.0.0.1:{port}")
            base = f"https://127.0.0.1:{nginx_port}"
            wait_live(base, verify=False)
            watched = {
                **{f"serve:{p.pid}": psutil.Process(p.pid) for p in processes[:2]},
                **{f"worker:{p.pid}": psutil.Process(p.pid) for p in processes[2:]},
                "nginx": psutil.Process(nginx.pid),
                "soak client": psutil.Process(),
            }
            nginx_workers = psutil.Process(nginx.pid).children()
            rss_start = {name: rss_mib(proc) for name, proc in watched.items()}
            cpu_start = {name: cpu_seconds(proc) for name, proc in watched.items()}
            nginx_workers_start = sum(cpu_seconds(proc) for proc in nginx_workers)
            shared_start = shared_servers_cpu()
            # Without autovacuum the job rows' dead versions pile up and everything slows.
            autovacuum = asyncio.run(pg_value("SHOW autovacuum"))
            print(
                f"soak: {args.rate:.0f} req/s for {args.duration:.0f} s through nginx, 2+2;"
                f" PostgreSQL autovacuum {autovacuum}"
            )
            soak = Soak(base, [psutil.Process(p.pid) for p in processes[:2]])
            elapsed = uvloop.run(soak.drive(args.rate, args.duration))
            report(soak, elapsed, server_latency(tmp / "data" / "logs"))
            print("\nprocess     RSS MiB start     end   CPU % of one core")
            for name, proc in watched.items():
                busy = (cpu_seconds(proc) - cpu_start[name]) / elapsed * 100
                print(f"{name:<14} {rss_start[name]:>10.1f} {rss_mib(proc):>7.1f} {busy:>10.1f}")
            busy = (sum(cpu_seconds(p) for p in nginx_workers) - nginx_workers_start) / elapsed
            print(f"{'nginx workers':<14} {'':>10} {'':>7} {busy * 100:>10.1f}")
            for group, cpu in shared_servers_cpu().items():
                used = sum(
                    seconds - shared_start[group].get(pid, 0.0) for pid, seconds in cpu.items()
                )
                print(f"{group:<14} {'':>10} {'':>7} {used / elapsed * 100:>10.1f}")
        finally:
            nginx.terminate()
            for process in processes:
                process.terminate()
            for process in [nginx, *processes]:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
