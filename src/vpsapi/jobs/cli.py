"""`vpsapi worker` and `vpsapi jobs …`: run jobs, and follow them from a terminal."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import uvloop
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from vpsapi.config import Settings, local_url

jobs_app = typer.Typer(help="Submit, follow and manage jobs through the API.")


def output_console() -> Console:
    """Standard output's console. Piped or captured, a table keeps its natural width: rich
    would fit it into 80 columns, wrapping the ids and addresses scripts read whole."""
    return Console(width=None if sys.stdout.isatty() else 1000)


console = output_console()
err_console = Console(stderr=True)


def run_worker(settings: Settings) -> None:
    """Run job workers until SIGINT/SIGTERM (saq on Redis, or the SQLite lease queue)."""
    from vpsapi.core.db import Database
    from vpsapi.core.events import EventBus, RedisEventBus
    from vpsapi.core.memory import freeze_long_lived_objects
    from vpsapi.core.redis import create_redis
    from vpsapi.jobs.module import start_runtime

    async def main() -> None:
        db = Database(settings)
        await db.warn_if_autovacuum_off()
        redis = create_redis(settings.redis_url) if settings.redis_url else None
        events = RedisEventBus(redis, settings.redis_prefix) if redis else EventBus()
        await events.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        runtime = await start_runtime(db, events, settings, run_workers=True, own_signals=False)
        freeze_long_lived_objects()
        err_console.print(
            f"[bold green]vpsapi worker[/] {runtime.engine.worker_id}: "
            f"{settings.jobs_workers} concurrent jobs, "
            f"{'saq on Redis' if redis else 'SQLite lease queue'}"
        )
        try:
            await stop.wait()
        finally:
            await runtime.stop()
            await events.close()
            if redis is not None:
                await redis.aclose()
            await db.dispose()

    uvloop.run(main())  # as `serve` runs under uvicorn: fewer cycles per event


# ---- API client commands -------------------------------------------------------------

UrlOption = Annotated[str | None, typer.Option("--url", help="API base URL")]
KeyOption = Annotated[
    str | None, typer.Option("--api-key", help="API key (default: API_KEY setting)")
]


@contextmanager
def _client(settings: Settings, url: str | None, api_key: str | None) -> Iterator[httpx.Client]:
    """An HTTP client for the API, holding a JWT fetched with the API key."""
    base = url or local_url(settings.host, settings.port)
    key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    if not key:
        err_console.print("[red]No API key:[/red] pass --api-key or set API_KEY")
        raise typer.Exit(2)
    with httpx.Client(base_url=base, timeout=30) as client:
        try:
            response = client.post("/api/auth/token", headers={"X-API-Key": key})
        except httpx.HTTPError as exc:
            err_console.print(f"[red]Cannot reach {base}:[/red] {exc}")
            raise typer.Exit(1) from exc
        if response.status_code != 200:
            err_console.print(f"[red]Token request failed:[/red] {response.text}")
            raise typer.Exit(1)
        client.headers["Authorization"] = f"Bearer {response.json()['token']}"
        yield client


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        err_console.print(f"[red]{response.status_code}:[/red] {response.text}")
        raise typer.Exit(1)
    return response.json()


def _settings() -> Settings:
    from vpsapi.cli import load_settings

    return load_settings()


@jobs_app.command("submit")
def submit(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON array of objects")
    ],
    processing_type: Annotated[str, typer.Option("--type", help="processing type")] = "type1",
    options: Annotated[str, typer.Option(help="options as a JSON object")] = "{}",
    watch: Annotated[bool, typer.Option("--watch", help="follow progress live")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Submit FILE.json as a job; with --watch, show a progress bar fed by the SSE stream."""
    try:
        data = json.loads(file.read_text())
        parsed_options = json.loads(options)
    except ValueError as exc:
        raise typer.BadParameter(f"invalid JSON: {exc}") from exc
    with _client(_settings(), url, api_key) as client:
        accepted = _check(
            client.post(
                "/api/jobs",
                json={"processingType": processing_type, "data": data, "options": parsed_options},
            )
        )
        job_id = accepted["jobId"]
        console.print(f"submitted [bold]{job_id}[/]")
        if watch:
            final = _watch(client, job_id)
            console.print_json(json.dumps(final))
            if final.get("status") != "COMPLETED":
                raise typer.Exit(1)


def _watch(client: httpx.Client, job_id: str) -> dict[str, Any]:
    last: dict[str, Any] = {"jobId": job_id}
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(*columns, console=err_console) as progress:
        bar = progress.add_task(job_id, total=100)
        with client.stream("GET", f"/api/sse/job-progress/{job_id}", timeout=None) as stream:
            event = "message"
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    payload = json.loads(line.split(":", 1)[1])
                    if event == "message":
                        last = payload
                        progress.update(
                            bar,
                            completed=payload.get("progress", 0),
                            description=f"{job_id} {payload.get('status', '')}",
                        )
                    elif event == "error":
                        last.setdefault("error", payload.get("error"))
                elif not line:
                    event = "message"
    return last


@jobs_app.command("list")
def list_jobs(
    status: Annotated[str | None, typer.Option(help="filter by status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """List your newest jobs."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    with _client(_settings(), url, api_key) as client:
        body = _check(client.get("/api/jobs", params=params))
    table = Table("job", "type", "status", "progress", "created")
    for job in body["jobs"]:
        table.add_row(
            job["jobId"],
            job["processingType"],
            job["status"],
            f"{job['progress']}%",
            job["createdAt"],
        )
    console.print(table)


@jobs_app.command("show")
def show(job_id: str, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Print one job as JSON."""
    with _client(_settings(), url, api_key) as client:
        console.print_json(json.dumps(_check(client.get(f"/api/jobs/{job_id}"))))


@jobs_app.command("cancel")
def cancel(job_id: str, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Cancel a pending or running job."""
    with _client(_settings(), url, api_key) as client:
        job = _check(client.post(f"/api/jobs/{job_id}/cancel"))
    console.print(f"{job['jobId']}: {job['status']}")
