"""Reading log files from the end, bounded in memory and time.

Files are read backwards in blocks, so the newest lines come first and a request
touches only as much of a large file as it needs. A page stops after `limit`
matches or after `SCAN_BUDGET_BYTES` examined, whichever comes first; its cursor
then names the file by inode (a rotation renames `x.log` to `x.log.1` without
changing it) and the byte offset of the next line to examine.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

BLOCK_BYTES = 64 * 1024
# A longer line is skipped rather than buffered.
MAX_LINE_BYTES = 256 * 1024
# Bytes one request may examine; the cursor lets the client go on from there.
SCAN_BUDGET_BYTES = 32 * 1024 * 1024
# Several processes append to one file, so its lines are only nearly in time order.
TIME_ORDER_SLACK = timedelta(seconds=5)

_ROTATED = re.compile(r"\.(\d+)$")


class InvalidCursor(ValueError):
    pass


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as exc:  # RecursionError: `[[[[…`
        raise InvalidCursor("Invalid cursor") from exc
    if not isinstance(position, dict):
        raise InvalidCursor("Invalid cursor")
    return position


@dataclass(frozen=True)
class FilePosition:
    """Continue with the lines that start before `offset` in the file with inode `inode`."""

    inode: int
    offset: int

    def cursor(self) -> str:
        return encode_cursor({"ino": self.inode, "off": self.offset})

    @classmethod
    def from_cursor(cls, cursor: str) -> FilePosition:
        position = decode_cursor(cursor)
        inode, offset = position.get("ino"), position.get("off")
        if not isinstance(inode, int) or not isinstance(offset, int) or offset < 0:
            raise InvalidCursor("Invalid cursor")
        return cls(inode, offset)


def rotated_files(active: Path) -> list[Path]:
    """The active file and its rotated copies, newest first (`x.log`, `x.log.1`, …)."""
    numbered: list[tuple[int, Path]] = []
    if active.parent.is_dir():
        for path in active.parent.glob(f"{active.name}.*"):
            match = _ROTATED.search(path.name)
            if match and path.name == f"{active.name}.{match.group(1)}":
                numbered.append((int(match.group(1)), path))
    return [active, *(path for _, path in sorted(numbered))]


def lines_before(handle: BinaryIO, end: int) -> Iterator[tuple[int, bytes]]:
    """Complete lines that end at or before byte `end`, last first, with their start offsets.

    A line still being written (no newline yet) at `end` is left out.
    """
    position = end
    pending = b""  # bytes [position, limit): the end of the lines not yet yielded
    oversized = False
    first = True
    while position > 0:
        size = min(BLOCK_BYTES, position)
        position -= size
        handle.seek(position)
        chunk = handle.read(size)
        if oversized:
            newline = chunk.rfind(b"\n")
            if newline < 0:
                continue
            chunk, oversized = chunk[: newline + 1], False
        pending = chunk + pending
        if first:
            newline = pending.rfind(b"\n")
            if newline < 0:
                pending = b""
                continue
            pending, first = pending[: newline + 1], False
        while True:
            cut = pending.rfind(b"\n", 0, len(pending) - 1)
            if cut < 0:
                break
            yield position + cut + 1, pending[cut + 1 : -1]
            pending = pending[: cut + 1]
        if len(pending) > MAX_LINE_BYTES:
            pending, oversized = b"", True
    if pending and not oversized:
        yield 0, pending[:-1]


@dataclass
class Page:
    entries: list[Any]
    next_cursor: str | None


# Returned by a line parser for a line older than the requested range: the scan ends.
STOP = object()


def scan_backwards(
    active: Path,
    parse: Callable[[bytes], Any],
    *,
    limit: int,
    cursor: str | None = None,
    budget: int = SCAN_BUDGET_BYTES,
) -> Page:
    """Newest-first entries of a file and its rotated copies.

    `parse` turns a line into an entry, None (not wanted) or STOP (older than wanted).
    """
    start = FilePosition.from_cursor(cursor) if cursor else None
    entries: list[Any] = []
    scanned = 0
    for path in rotated_files(active):
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below, per file
        except FileNotFoundError:
            continue
        with handle:
            info = os.fstat(handle.fileno())
            end = info.st_size
            if start is not None:
                if info.st_ino != start.inode:
                    continue  # newer than the cursor's file
                end, start = min(start.offset, end), None
            for offset, line in lines_before(handle, end):
                if scanned >= budget or len(entries) >= limit:
                    return Page(entries, FilePosition(info.st_ino, offset + len(line) + 1).cursor())
                scanned += len(line) + 1
                entry = parse(line)
                if entry is STOP:
                    return Page(entries, None)
                if entry is not None:
                    entries.append(entry)
    return Page(entries, None)


def tail_lines(path: Path, count: int, contains: str | None = None) -> list[str]:
    """The last `count` lines of a text file (optionally only those containing a text),
    oldest first as `tail` prints them; at most SCAN_BUDGET_BYTES are examined."""
    needle = contains.lower() if contains else None

    def parse(line: bytes) -> str | None:
        text = line.decode("utf-8", "replace")
        return text if needle is None or needle in text.lower() else None

    page = scan_backwards(path, parse, limit=count)
    return list(reversed(page.entries))


def parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
