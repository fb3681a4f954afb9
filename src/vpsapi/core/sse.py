"""Server-Sent Events written as seed 000's Express stream writes them.

Lines end in `\n` (sse-starlette's default is `\r\n`, which EventSource accepts but a
`fetch` reader splitting on "\n\n", as clients sending an Authorization header must use,
never matches), the content type is exactly `text/event-stream`, and an idle stream
carries `:keep-alive` every 30 seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from typing import Any

from sse_starlette.sse import EventSourceResponse, ServerSentEvent

KEEP_ALIVE_SECONDS = 30
STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx passes each event on as it comes
}


class KeepAlive(ServerSentEvent):
    """The comment line seed 000 writes, byte for byte (the library's has a space and a
    time stamp)."""

    def encode(self) -> bytes:
        return b":keep-alive\n\n"


def event_stream(
    events: AsyncIterable[Any], *, headers: Mapping[str, str] | None = None, **options: Any
) -> EventSourceResponse:
    """A stream of `events` (dicts of `event`, `id`, `data`, `retry`); `options` go to
    sse-starlette's response (shutdown event and grace period)."""
    return EventSourceResponse(
        events,
        headers={**STREAM_HEADERS, **(headers or {})},
        sep="\n",
        ping=KEEP_ALIVE_SECONDS,
        ping_message_factory=KeepAlive,
        **options,
    )
