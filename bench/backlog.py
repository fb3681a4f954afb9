"""Draining a backlog: how fast two `vpsapi worker` processes work off jobs that piled up.

    python bench/backlog.py [--jobs 5000] [--workers 2]
    python bench/backlog.py --jobs 3000 --delay-ms 2000 --seconds 60   # a backlog that waits

Starts, on 127.0.0.1 only: a fresh PostgreSQL database on the machine's server, a Redis key
prefix, one `vpsapi serve` (no workers inside) that accepts `--jobs` one-item type1 jobs from
32 concurrent clients while no worker runs, then `--workers` `vpsapi worker` processes, and
watches them for at most `--seconds`. Prints the submit rate, the drain time and rate (or how
many were done when time ran out), the Redis commands per job by command (from
`INFO commandstats`; other clients of the machine's Redis count too) and each worker's CPU.
Stops everything by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import httpx
import psutil
import redis.asyncio as aioredis
from common import API_KEY, REDIS_URL, free_port, pg_value, scaleout_setup, start, wait_live


async def submit(base: str, count: int, delay_ms: int) -> float:
    """Jobs/s accepted by the API while nothing runs them."""
    body = {"processingType": "type1", "data": [{"i": 1}], "options": {"delayMs": delay_ms}}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        token = (await client.post("/api/auth/token", headers={"X-API-Key": API_KEY})).json()
        client.headers["Authorization"] = f"Bearer {token['token']}"
        sem = asyncio.Semaphore(32)

        async def one() -> None:
            async with sem:
                response = await client.post("/api/jobs", json=body)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        return count / (time.perf_counter() - started)


async def commandstats() -> Counter[str]:
    client = aioredis.from_url(REDIS_URL)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


async def unfinished(db: str) -> int:
    return int(
        await pg_value(
            "SELECT count(*) FROM jobs WHERE status IN ('PENDING', 'PROCESSING')", database=db
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--delay-ms", type=int, default=0, help="each job's simulated work")
    parser.add_argument("--seconds", type=float, default=600, help="stop watching after this")
    args = parser.parse_args()

    with scaleout_setup("backlog", JOBS_WORKERS="8") as setup:
        tmp, env, db = setup
        port = free_port()
        processes = [start(["serve", "--port", str(port)], env, tmp / "serve.log")]
        try:
            base = f"http://127.0.0.1:{port}"
            wait_live(base, processes[0])
            rate = asyncio.run(submit(base, args.jobs, args.delay_ms))
            print(f"backlog: {args.jobs} jobs accepted at {rate:.0f} jobs/s, no worker running")
            before = asyncio.run(commandstats())
            started = time.perf_counter()
            workers = [start(["worker"], env, tmp / f"worker{i}.log") for i in range(args.workers)]
            processes += workers
            watched = [psutil.Process(w.pid) for w in workers]
            cpu = [0.0] * len(watched)
            left = args.jobs
            while left > 0 and time.perf_counter() - started < args.seconds:
                time.sleep(0.25)
                for index, proc in enumerate(watched):
                    times = proc.cpu_times()
                    cpu[index] = times.user + times.system
                left = asyncio.run(unfinished(db))
            drained = time.perf_counter() - started
            calls = asyncio.run(commandstats()) - before
            done = args.jobs - left
            print(
                f"{args.workers} workers finished {done} jobs in {drained:.1f} s (worker start"
                f" included): {done / drained:.0f} jobs/s; {left} still waiting"
            )
            total = sum(calls.values())
            print(f"Redis commands: {total / drained:.0f}/s, {total / max(done, 1):.1f} per job")
            for name, count in calls.most_common(12):
                print(f"  {name:<12} {count / drained:>8.1f}/s {count / max(done, 1):>8.2f}/job")
            for index, seconds in enumerate(cpu):
                print(f"worker {index}: {seconds:.1f} s CPU ({seconds / drained * 100:.0f} %)")
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)


if __name__ == "__main__":
    main()
