"""What a Socket.IO client sends that python-engineio or python-socketio cannot read: a
warning without a traceback, not the libraries' error lines with theirs (client garbage
is no fault of the server; tracebacks of our own handlers stay errors).

- A WebSocket frame that is no Engine.IO packet (empty, no packet type, bad base64, JSON
  nested past the parser's depth, an unknown type) closes the socket before
  python-engineio reads it: it would raise outside any handler (uvicorn then logs
  "Exception in ASGI application" and the socket's cleanup never runs) or log
  "Unknown receive error" with a traceback.
- A packet python-socketio cannot decode (`42garbage`, `49`, a stray binary frame) fails
  in its message handler, logged by python-engineio with a traceback: `CLIENT_INPUT`
  turns that record into a warning without one, and so a refused handshake (an unknown
  protocol version, session or transport), which it logs as an error.
"""

from __future__ import annotations

import logging
from types import TracebackType

import structlog
from engineio import packet as engineio_packet
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("vpsapi.citypulse.realtime")

# The libraries' loggers. Handed to the servers as loggers: given False, each would add a
# plain-text stderr handler of its own. WARNING: at INFO they log every event and room.
SOCKETIO_LOGGER = logging.getLogger("socketio.server")
ENGINEIO_LOGGER = logging.getLogger("engineio.server")
# How python-engineio's words end when a handler raised (`<event> handler error`,
# `<event> async handler error`, `post request handler error`: a polling client's body).
_HANDLER_FAILED = "handler error"


def _frame_problem(message: Message) -> str | None:
    frame = message["text"] if message.get("text") is not None else message.get("bytes")
    try:
        decoded = engineio_packet.Packet(encoded_packet=frame)
    except (ValueError, RecursionError) as exc:  # binascii.Error is a ValueError
        return f"{type(exc).__name__}: {exc}"
    if not 0 <= decoded.packet_type < len(engineio_packet.packet_names):
        return f"unknown packet type {decoded.packet_type}"
    return None


class FrameGuard:
    """Around the Socket.IO app: a WebSocket frame that is no Engine.IO packet ends the
    connection as the client's leaving would (python-engineio closes its socket, the
    disconnect handler runs), logged as a warning."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return

        async def checked_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive" and (problem := _frame_problem(message)):
                log.warning("socketio_malformed_frame", error=problem[:200])
                # As if the client had left: python-engineio ends its loop, closes the
                # WebSocket and runs its cleanup.
                return {"type": "websocket.disconnect", "code": 1002}
            return message

        await self.app(scope, checked_receive, send)


def _passes_our_code(traceback: TracebackType | None) -> bool:
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__", "").startswith("vpsapi."):
            return True
        traceback = traceback.tb_next
    return False


class ClientInputFilter(logging.Filter):
    """python-engineio's error records about what a client sent, as warnings: a packet
    python-socketio could not decode (a traceback through library code only) or a refused
    handshake (logged once per kind as an error, then at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.ERROR:
            return True
        if record.exc_info:
            _, exc, traceback = record.exc_info
            if not str(record.msg).endswith(_HANDLER_FAILED) or _passes_our_code(traceback):
                return True  # a fault of ours (or of the library's own tasks)
            record.msg = "socketio_malformed_packet: %s: %.200s"
            record.args = (type(exc).__name__, exc)
            record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


CLIENT_INPUT = ClientInputFilter()


def configure_library_loggers() -> tuple[logging.Logger, logging.Logger]:
    """The loggers to hand python-socketio (`logger`) and python-engineio (`engineio_logger`)."""
    for logger in (SOCKETIO_LOGGER, ENGINEIO_LOGGER):
        logger.setLevel(logging.WARNING)
    ENGINEIO_LOGGER.addFilter(CLIENT_INPUT)  # once: addFilter skips a filter it holds
    return SOCKETIO_LOGGER, ENGINEIO_LOGGER
