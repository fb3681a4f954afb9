"""CityPulse domain logic: buildings, sensors, readings. Knows nothing of HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Float,
    String,
    Table,
    bindparam,
    delete,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.citypulse.models import Building, Reading, Sensor
from vpsapi.citypulse.schemas import (
    EPOCH,
    BuildingIn,
    BuildingPatch,
    ReadingIn,
    ReadingPoint,
    SensorIn,
    SensorPatch,
)
from vpsapi.core.db import answer_if_deleted_meanwhile, utcnow
from vpsapi.core.errors import Conflict, NotFound, invalid
from vpsapi.core.pagination import Keyset
from vpsapi.core.schemas import check_window, patch_changes

STEP_MS = {"5m": 300_000, "1h": 3_600_000, "1d": 86_400_000}
_SORT_COLUMNS = {
    "name": Building.name,
    "createdAt": Building.created_at,
    "city": Building.city,
    "floorAreaM2": Building.floor_area_m2,
}
_TEXT_SORTS = {"name", "city"}
# A building's fields a PATCH may clear with null (a name it must keep).
_NULLABLE_BUILDING_FIELDS = frozenset(BuildingPatch.model_fields) - {"name"}
# Readings per INSERT: bounds the size of one statement (and SQLite's bind parameters).
INSERT_CHUNK = 5_000
# Core inserts (not ORM ones, which would take a statement's parameters for rows).
READINGS_TABLE = cast(Table, Reading.__table__)
# Rounds of moving receive-stamped readings past taken milliseconds; one is the rule.
RECEIVED_ATTEMPTS = 20

ONE_MS = timedelta(milliseconds=1)
# The moments a datetime can hold, in epoch ms: range maths (the period before `from`)
# may step outside them, and a date outside them cannot be answered.
MIN_MS = (datetime.min.replace(tzinfo=UTC) - EPOCH) // ONE_MS
MAX_MS = (datetime.max.replace(tzinfo=UTC) - EPOCH) // ONE_MS


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // ONE_MS  # exact: float seconds * 1000 can land 1 ms short


def from_ms(ms: int) -> datetime:
    return EPOCH + min(max(ms, MIN_MS), MAX_MS) * ONE_MS


def check_range(start: datetime, end: datetime) -> tuple[int, int]:
    """`from`/`to` in epoch ms; `to` must be after `from`."""
    start_ms, end_ms = to_ms(start), to_ms(end)
    check_window(start_ms, end_ms)
    return start_ms, end_ms


# The most buckets one report may hold (energy and every stepped analytics report).
MAX_BUCKETS = 20_000


def bucket_starts(start_ms: int, end_ms: int, width: int) -> range:
    """Every UTC-aligned bucket the window touches, the first one possibly begun before
    `from` (as SQL buckets the readings)."""
    return range(start_ms // width * width, end_ms, width)


def check_buckets(start_ms: int, end_ms: int, width: int, field: str = "step") -> None:
    """At most MAX_BUCKETS buckets of `width`, counted as the report will hold them: a
    window starting inside a bucket touches one more than its length says."""
    if len(bucket_starts(start_ms, end_ms, width)) > MAX_BUCKETS:
        raise invalid(
            field,
            f"Too many buckets: use a coarser step or a shorter range (at most {MAX_BUCKETS})",
        )


# ---- buildings ----------------------------------------------------------------------


async def create_building(session: AsyncSession, data: BuildingIn, owner: str) -> Building:
    building = Building(**data.model_dump(), created_by=owner)
    session.add(building)
    await session.flush()
    return building


def building_not_found() -> NotFound:
    return NotFound("Building not found")


async def get_building(session: AsyncSession, building_id: str) -> Building:
    building = await session.get(Building, building_id)
    if building is None:
        raise building_not_found()
    return building


def _folded(session: AsyncSession, column: Any) -> Any:
    """`column` with A-Z lowered, compared code point by code point: SQLite's lower() and
    BINARY collation, and PostgreSQL's under the "C" collation whatever the database's
    locale, so a list sorts the same on both engines."""
    if session.get_bind().dialect.name == "postgresql":
        column = column.collate("C")
    return func.lower(column, type_=String)


def _same_text(session: AsyncSession, column: Any, value: str) -> Any:
    """`column` equals `value` ignoring the case of A-Z, alike on both engines (as sorts)."""
    return _folded(session, column) == _folded(session, literal(value, String))


def _building_keyset(session: AsyncSession, sort: str) -> Keyset:
    key = sort.removeprefix("-")
    if key not in _SORT_COLUMNS:
        raise invalid("sort", f"must be one of {sorted(_SORT_COLUMNS)} (prefix - for descending)")
    column = _SORT_COLUMNS[key]
    return Keyset(
        sort,
        _folded(session, column) if key in _TEXT_SORTS else column,
        Building.id,
        descending=sort.startswith("-"),
        nullable=bool(column.nullable),
    )


async def list_buildings(
    session: AsyncSession,
    *,
    city: str | None,
    building_type: str | None,
    q: str | None,
    sort: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[Building], str | None]:
    keyset = _building_keyset(session, sort)
    query = select(Building, keyset.key)
    if city:
        query = query.where(_same_text(session, Building.city, city))
    if building_type:
        query = query.where(_same_text(session, Building.building_type, building_type))
    if q:  # autoescape: % and _ in `q` are plain characters, not wildcards
        query = query.where(Building.name.icontains(q, autoescape=True))
    if cursor:
        query = query.where(keyset.after(cursor))
    rows = (await session.execute(query.order_by(*keyset.order_by()).limit(limit + 1))).all()
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = keyset.cursor(last[1], last[0].id) if last is not None else None
    return [building for building, _ in rows[:limit]], next_cursor


async def update_building(session: AsyncSession, building_id: str, data: BuildingPatch) -> Building:
    building = await get_building(session, building_id)
    changes = patch_changes(data, nullable=_NULLABLE_BUILDING_FIELDS)
    await _apply(session, building, changes)
    return building


async def _apply(session: AsyncSession, row: Building | Sensor, changes: dict[str, Any]) -> None:
    """Set the fields `changes` alters; `updated_at` (and so the ETag) moves only when one
    does, so a PATCH that changes nothing leaves the resource as it was."""
    changed = {field: value for field, value in changes.items() if getattr(row, field) != value}
    if not changed:
        return
    for field, value in changed.items():
        setattr(row, field, value)
    row.updated_at = utcnow()
    await session.flush()


async def delete_building(session: AsyncSession, building_id: str) -> None:
    await session.delete(await get_building(session, building_id))


# ---- sensors ------------------------------------------------------------------------


async def create_sensor(session: AsyncSession, building_id: str, data: SensorIn) -> Sensor:
    await get_building(session, building_id)
    # A sensor's own fields (a body may also name the building).
    sensor = Sensor(building_id=building_id, **data.model_dump(include=set(SensorIn.model_fields)))
    session.add(sensor)
    with answer_if_deleted_meanwhile(building_not_found()):  # since the check above
        await session.flush()
    return sensor


def sensor_not_found() -> NotFound:
    return NotFound("Sensor not found")


async def get_sensor(session: AsyncSession, sensor_id: str) -> Sensor:
    sensor = await session.get(Sensor, sensor_id)
    if sensor is None:
        raise sensor_not_found()
    return sensor


async def list_sensors(
    session: AsyncSession, *, building_id: str | None, kind: str | None
) -> Sequence[Sensor]:
    query = select(Sensor).order_by(Sensor.created_at, Sensor.id)
    if building_id:
        query = query.where(Sensor.building_id == building_id)
    if kind:
        query = query.where(Sensor.kind == kind)
    return (await session.scalars(query)).all()


async def update_sensor(session: AsyncSession, sensor_id: str, data: SensorPatch) -> Sensor:
    sensor = await get_sensor(session, sensor_id)
    await _apply(session, sensor, patch_changes(data))
    return sensor


async def delete_sensor(session: AsyncSession, sensor_id: str) -> None:
    await session.delete(await get_sensor(session, sensor_id))


# ---- readings -----------------------------------------------------------------------


async def ingest_readings(
    session: AsyncSession,
    sensor_id: str,
    readings: Sequence[ReadingIn],
    *,
    received: Sequence[ReadingIn] = (),
) -> int:
    """Store readings; a repeated timestamp for the same sensor keeps the last value sent.

    `received` readings carry their receive time, not one of their own (MQTT payloads
    without a time): they never replace a stored reading. One whose millisecond is taken
    (another process received one for this sensor at the same moment) moves on to the
    milliseconds after this batch, so none is lost."""
    await get_sensor(session, sensor_id)
    latest: dict[int, float] = {to_ms(r.timestamp): r.value for r in readings}
    stamps = list(latest)
    with answer_if_deleted_meanwhile(sensor_not_found()):  # since the check above
        for start in range(0, len(stamps), INSERT_CHUNK):
            chunk = {ts: latest[ts] for ts in stamps[start : start + INSERT_CHUNK]}
            # An upsert on the primary key: a DELETE ... IN (thousands of stamps) first
            # degraded to a scan of the whole table per chunk on PostgreSQL as the table grew.
            upsert, params = _insert_readings(session, sensor_id, chunk)
            statement = upsert.on_conflict_do_update(
                index_elements=[Reading.sensor_id, Reading.ts_ms],
                set_={"value": upsert.excluded.value},
            )
            await session.execute(statement, params)
        for start in range(0, len(received), INSERT_CHUNK):
            await _insert_received(session, sensor_id, received[start : start + INSERT_CHUNK])
        await session.flush()
    return len(readings) + len(received)


def _insert_readings(
    session: AsyncSession, sensor_id: str, values: dict[int, float]
) -> tuple[Any, Any]:
    """An INSERT of many readings and its parameters. PostgreSQL gets them as two arrays
    unnested by the server: one statement run for the batch, where executemany pays
    PostgreSQL's per-statement work once per row. SQLite runs in-process, so a plain
    executemany costs it nothing extra."""
    if session.get_bind().dialect.name == "postgresql":
        rows = (
            func.unnest(
                bindparam("stamps", type_=postgresql.ARRAY(BigInteger)),
                bindparam("values", type_=postgresql.ARRAY(Float)),
            )
            .table_valued("ts_ms", "value")
            .render_derived()
        )
        statement = postgresql.insert(READINGS_TABLE).from_select(
            ["sensor_id", "ts_ms", "value"],
            select(literal(sensor_id, String), rows.c.ts_ms, rows.c.value),
        )
        return statement, {"stamps": list(values), "values": list(values.values())}
    rows_in = [{"sensor_id": sensor_id, "ts_ms": ts, "value": v} for ts, v in values.items()]
    return sqlite.insert(READINGS_TABLE), rows_in


async def _insert_received(
    session: AsyncSession, sensor_id: str, readings: Sequence[ReadingIn]
) -> None:
    pending = {to_ms(r.timestamp): r.value for r in readings}  # distinct by construction
    for _ in range(RECEIVED_ATTEMPTS):
        insert, params = _insert_readings(session, sensor_id, pending)
        statement = insert.on_conflict_do_nothing(
            index_elements=[Reading.sensor_id, Reading.ts_ms]
        ).returning(Reading.ts_ms)
        stored = set((await session.execute(statement, params)).scalars())
        left = [value for ts, value in sorted(pending.items()) if ts not in stored]
        if not left:
            return
        after = max(pending) + 1
        pending = {after + index: value for index, value in enumerate(left)}
    raise Conflict("Readings could not be given free timestamps; send them again")


async def query_readings(
    session: AsyncSession,
    sensor_id: str,
    *,
    start: datetime,
    end: datetime,
    step: str | None,
    aggregate: str,
    limit: int,
) -> list[ReadingPoint]:
    """Raw readings, or one point per time bucket with the aggregate computed in SQL."""
    await get_sensor(session, sensor_id)
    start_ms, end_ms = check_range(start, end)
    in_range = (
        Reading.sensor_id == sensor_id,
        Reading.ts_ms >= start_ms,
        Reading.ts_ms < end_ms,
    )
    if step is None:
        raw = await session.execute(
            select(Reading.ts_ms, Reading.value)
            .where(*in_range)
            .order_by(Reading.ts_ms)
            .limit(limit)
        )
        return [ReadingPoint(timestamp=from_ms(ts), value=value) for ts, value in raw]
    width = STEP_MS[step]
    bucket = ((Reading.ts_ms // width) * width).label("bucket")
    if aggregate == "last":
        latest = (
            select(bucket, func.max(Reading.ts_ms).label("ts"), func.count().label("n"))
            .where(*in_range)
            .group_by(bucket)
            .subquery()
        )
        query = (
            select(latest.c.bucket, Reading.value, latest.c.n)
            .join(latest, (Reading.ts_ms == latest.c.ts) & (Reading.sensor_id == sensor_id))
            .order_by(latest.c.bucket)
        )
    else:
        aggregated = {
            "avg": func.avg(Reading.value),
            "min": func.min(Reading.value),
            "max": func.max(Reading.value),
        }[aggregate]
        query = (
            select(bucket, aggregated, func.count())
            .where(*in_range)
            .group_by(bucket)
            .order_by(bucket)
        )
    rows = await session.execute(query.limit(limit))
    return [
        ReadingPoint(timestamp=from_ms(int(b)), value=float(v), count=int(n)) for b, v, n in rows
    ]


# Retention deletes in slices of this much time, so no single statement holds locks long.
PURGE_SLICE_MS = 86_400_000


async def purge_readings(session: AsyncSession, before: datetime) -> AsyncIterator[int]:
    """Delete readings older than `before`, one day of data per transaction (committed as
    it goes, so a huge backlog never holds one long lock); yields how many each committed
    slice removed, so a purge that fails half-way still accounts for what went."""
    cutoff = to_ms(before)
    while True:
        oldest = await session.scalar(select(func.min(Reading.ts_ms)))
        if oldest is None or oldest >= cutoff:
            return
        upto = min(cutoff, oldest + PURGE_SLICE_MS)
        result = await session.execute(delete(Reading).where(Reading.ts_ms < upto))
        await session.commit()
        yield result.rowcount or 0  # type: ignore[attr-defined]
