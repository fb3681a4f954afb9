"""AI chat overhead: the same chat sent straight to a local fake provider and through
`POST /api/v1/ai/chat` of a real `vpsapi serve` (auth, validation, the provider call,
a usage row, the envelope).

    python bench/ai.py [--requests 300] [--concurrency 16]

The fake provider (tests/fake_llm.py, in its own uvicorn process) answers at once, so
the difference is vpsapi's own cost per call. Prints latency percentiles, throughput
and time to first streamed piece. Starts its processes on 127.0.0.1 and stops them at
exit.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from common import free_port, login, server  # noqa: E402

from fake_llm import OPENAI_KEY, FakeProviders  # noqa: E402

BODY = {
    "model": "gpt-bench",
    "messages": [{"role": "user", "content": "How much energy did building 7 use?"}],
}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(
    requests: int, concurrency: int, send: Callable[[], Awaitable[None]]
) -> tuple[list[float], float]:
    """Latencies (ms) of `requests` calls made by `concurrency` clients, and calls/s."""
    latencies: list[float] = []
    remaining = iter(range(requests))

    async def client() -> None:
        for _ in remaining:
            started = time.perf_counter()
            await send()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, requests / (time.perf_counter() - started)


async def first_piece_ms(http: httpx.AsyncClient, url: str, body: dict, headers: dict) -> float:
    started = time.perf_counter()
    async with http.stream("POST", url, json=body, headers=headers) as response:
        async for line in response.aiter_lines():
            if '"content": "gpt-bench"' in line:  # the first piece, in either format
                return (time.perf_counter() - started) * 1000
    raise RuntimeError("no streamed piece")


async def run(requests: int, concurrency: int, fake: FakeProviders, base: str) -> None:
    token = login(base)
    api_headers = {"Authorization": f"Bearer {token}"}
    direct_url = fake.settings()["openai_base_url"] + "/chat/completions"
    direct_headers = {"Authorization": f"Bearer {OPENAI_KEY}"}
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def direct() -> None:
            response = await http.post(direct_url, json=BODY, headers=direct_headers)
            response.raise_for_status()

        async def via_api() -> None:
            response = await http.post(base + "/api/v1/ai/chat", json=BODY, headers=api_headers)
            response.raise_for_status()

        async def me() -> None:  # the authenticated-request floor every chat pays
            response = await http.get(base + "/api/v1/me", headers=api_headers)
            response.raise_for_status()

        for send in (direct, via_api, me):  # warm up connections and code paths
            await measure(20, 4, send)
        print(f"{requests} chats, {concurrency} concurrent clients")
        print(f"{'path':<28} {'p50 ms':>8} {'p99 ms':>8} {'chats/s':>9}")
        for label, send, clients in (
            ("provider direct, 1 client", direct, 1),
            ("via vpsapi, 1 client", via_api, 1),
            ("GET /api/v1/me, 1 client", me, 1),
            (f"provider direct, {concurrency} clients", direct, concurrency),
            (f"via vpsapi, {concurrency} clients", via_api, concurrency),
        ):
            latencies, rate = await measure(requests, clients, send)
            print(
                f"{label:<28} {statistics.median(latencies):8.1f} "
                f"{percentile(latencies, 0.99):8.1f} {rate:9.0f}"
            )

        stream_body = {**BODY, "stream": True}
        direct_first = [
            await first_piece_ms(http, direct_url, stream_body, direct_headers) for _ in range(50)
        ]
        api_first = [
            await first_piece_ms(http, base + "/api/v1/ai/chat", stream_body, api_headers)
            for _ in range(50)
        ]
        print(
            "first streamed piece p50 ms: "
            f"direct {statistics.median(direct_first):.1f}, "
            f"via vpsapi {statistics.median(api_first):.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    fake = FakeProviders(port=free_port())
    uvicorn_args = ["--factory", "fake_llm:create_app", "--port", str(fake.port)]
    provider = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *uvicorn_args, "--log-level", "warning"], cwd=TESTS
    )
    try:
        for _ in range(100):
            try:
                httpx.get(fake.base_url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        with server(**fake.env()) as base:
            asyncio.run(run(args.requests, args.concurrency, fake, base))
    finally:
        provider.terminate()
        provider.wait(10)


if __name__ == "__main__":
    main()
