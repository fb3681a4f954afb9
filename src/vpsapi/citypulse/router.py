"""HTTP routes of /api/v1/citypulse (thin: validation and envelopes)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from vpsapi.auth.dependencies import CurrentPrincipal, ManagerUser
from vpsapi.citypulse import alerts, analytics, energy, ingest, service
from vpsapi.citypulse.metrics import record_frontend_source
from vpsapi.citypulse.runtime import RuntimeDep
from vpsapi.citypulse.schemas import (
    Aggregate,
    AlertOut,
    AlertRuleIn,
    AlertRuleOut,
    AnalyticsOverview,
    AnalyticsReportLink,
    AnalyticsStep,
    AnomalyReport,
    BaselineMethod,
    BaselineReport,
    BuildingIn,
    BuildingOut,
    BuildingPatch,
    EnergyIntensity,
    EnergyReport,
    IngestResult,
    OccupancyReport,
    ReadingBatchIn,
    ReadingsBody,
    ReadingSeries,
    SensorIn,
    SensorInBuilding,
    SensorKind,
    SensorOut,
    SensorPatch,
    Step,
    TopConsumers,
)
from vpsapi.core.db import SessionDep
from vpsapi.core.modules import feature_switch
from vpsapi.core.schemas import (
    V1_ERROR_RESPONSES,
    Envelope,
    ErrorEnvelope,
    Page,
    UtcDatetime,
    envelope,
)

router = APIRouter(
    prefix="/api/v1/citypulse",
    tags=["citypulse"],
    responses={
        **V1_ERROR_RESPONSES,
        503: {"model": ErrorEnvelope, "description": "CityPulse is off (CITYPULSE_ENABLED)"},
    },
    dependencies=[
        Depends(feature_switch("citypulse_enabled", "CityPulse")),
        Depends(record_frontend_source),
    ],
)


@router.get(
    "/buildings",
    response_model=Envelope[Page[BuildingOut]],
    responses={400: {"description": "Invalid cursor"}},
)
async def list_buildings(
    session: SessionDep,
    _: CurrentPrincipal,
    city: str | None = None,
    building_type: Annotated[str | None, Query(alias="type")] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    sort: str = "name",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    # A name of 200 characters, each escaped to \uXXXX, in base64: some 1,700 characters.
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> Envelope[Page[BuildingOut]]:
    rows, next_cursor = await service.list_buildings(
        session, city=city, building_type=building_type, q=q, sort=sort, limit=limit, cursor=cursor
    )
    items = [BuildingOut.model_validate(row) for row in rows]
    return envelope(Page[BuildingOut](items=items, next_cursor=next_cursor))


@router.post("/buildings", status_code=201, response_model=Envelope[BuildingOut])
async def create_building(
    body: BuildingIn, session: SessionDep, principal: ManagerUser
) -> Envelope[BuildingOut]:
    building = await service.create_building(session, body, principal.subject)
    return envelope(BuildingOut.model_validate(building))


@router.get("/buildings/{building_id}", response_model=Envelope[BuildingOut])
async def get_building(
    building_id: str, session: SessionDep, _: CurrentPrincipal
) -> Envelope[BuildingOut]:
    return envelope(BuildingOut.model_validate(await service.get_building(session, building_id)))


@router.patch("/buildings/{building_id}", response_model=Envelope[BuildingOut])
async def update_building(
    building_id: str, body: BuildingPatch, session: SessionDep, _: ManagerUser
) -> Envelope[BuildingOut]:
    building = await service.update_building(session, building_id, body)
    return envelope(BuildingOut.model_validate(building))


@router.delete("/buildings/{building_id}", status_code=204)
async def delete_building(building_id: str, session: SessionDep, _: ManagerUser) -> Response:
    await service.delete_building(session, building_id)
    return Response(status_code=204)


@router.get("/buildings/{building_id}/sensors", response_model=Envelope[list[SensorOut]])
async def list_building_sensors(
    building_id: str, session: SessionDep, _: CurrentPrincipal
) -> Envelope[list[SensorOut]]:
    await service.get_building(session, building_id)
    rows = await service.list_sensors(session, building_id=building_id, kind=None)
    return envelope([SensorOut.model_validate(row) for row in rows])


@router.post(
    "/buildings/{building_id}/sensors", status_code=201, response_model=Envelope[SensorOut]
)
async def create_sensor(
    building_id: str, body: SensorIn, session: SessionDep, _: ManagerUser
) -> Envelope[SensorOut]:
    sensor = await service.create_sensor(session, building_id, body)
    return envelope(SensorOut.model_validate(sensor))


@router.post(
    "/sensors",
    status_code=201,
    response_model=Envelope[SensorOut],
    responses={404: {"description": "Building not found"}},
)
async def create_sensor_naming_its_building(
    body: SensorInBuilding, session: SessionDep, _: ManagerUser
) -> Envelope[SensorOut]:
    """As `POST /buildings/{id}/sensors`, the building named in the body (`/sensors` is
    the seed's own endpoint)."""
    sensor = await service.create_sensor(session, body.building_id, body)
    return envelope(SensorOut.model_validate(sensor))


@router.get("/sensors", response_model=Envelope[list[SensorOut]])
async def list_sensors(
    session: SessionDep,
    _: CurrentPrincipal,
    building: str | None = None,
    kind: SensorKind | None = None,
) -> Envelope[list[SensorOut]]:
    rows = await service.list_sensors(session, building_id=building, kind=kind)
    return envelope([SensorOut.model_validate(row) for row in rows])


@router.get("/sensors/{sensor_id}", response_model=Envelope[SensorOut])
async def get_sensor(
    sensor_id: str, session: SessionDep, _: CurrentPrincipal
) -> Envelope[SensorOut]:
    return envelope(SensorOut.model_validate(await service.get_sensor(session, sensor_id)))


@router.patch("/sensors/{sensor_id}", response_model=Envelope[SensorOut])
async def update_sensor(
    sensor_id: str, body: SensorPatch, session: SessionDep, _: ManagerUser
) -> Envelope[SensorOut]:
    return envelope(SensorOut.model_validate(await service.update_sensor(session, sensor_id, body)))


@router.delete("/sensors/{sensor_id}", status_code=204)
async def delete_sensor(sensor_id: str, session: SessionDep, _: ManagerUser) -> Response:
    await service.delete_sensor(session, sensor_id)
    return Response(status_code=204)


@router.post(
    "/sensors/{sensor_id}/readings",
    status_code=201,
    response_model=Envelope[IngestResult],
    responses={409: {"description": "Readings could not be given free timestamps: send again"}},
)
async def ingest_readings(
    sensor_id: str,
    body: ReadingsBody,
    session: SessionDep,
    runtime: RuntimeDep,
    _: ManagerUser,
) -> Envelope[IngestResult]:
    readings = body.readings if isinstance(body, ReadingBatchIn) else [body]
    accepted = await ingest.record_readings(session, runtime, sensor_id, readings, transport="http")
    return envelope(IngestResult(accepted=accepted))


@router.get("/sensors/{sensor_id}/readings", response_model=Envelope[ReadingSeries])
async def query_readings(
    sensor_id: str,
    session: SessionDep,
    _: CurrentPrincipal,
    start: Annotated[UtcDatetime, Query(alias="from")],
    end: Annotated[UtcDatetime, Query(alias="to")],
    step: Step | None = None,
    agg: Aggregate = "avg",
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Envelope[ReadingSeries]:
    points = await service.query_readings(
        session, sensor_id, start=start, end=end, step=step, aggregate=agg, limit=limit
    )
    return envelope(ReadingSeries(sensor_id=sensor_id, step=step, aggregate=agg, points=points))


@router.get(
    "/energy",
    response_model=Envelope[EnergyReport],
    responses={404: {"description": "Building not found"}},
)
async def energy_usage(
    request: Request,
    session: SessionDep,
    _: CurrentPrincipal,
    building: Annotated[str | None, Query(description="omit for every building together")] = None,
    start: Annotated[
        UtcDatetime | None, Query(alias="from", description="default: 24 hours before `to`")
    ] = None,
    end: Annotated[
        UtcDatetime | None,
        Query(alias="to", description="default: the end of the current step (e.g. hour)"),
    ] = None,
    step: Step = "1h",
) -> Envelope[EnergyReport]:
    settings = request.app.state.settings
    report = await energy.energy_report(
        session,
        building,
        start=start,
        end=end,
        step=step,
        tariff=settings.citypulse_tariff_per_kwh,
        currency=settings.citypulse_currency,
    )
    return envelope(report)


# ---- analytics (definitions in docs/citypulse.md) --------------------------------------

From = Annotated[UtcDatetime, Query(alias="from")]
To = Annotated[UtcDatetime, Query(alias="to")]
_ANALYTICS = f"{router.prefix}/analytics"
ANALYTICS_REPORTS = [
    AnalyticsReportLink(name=name, path=f"{_ANALYTICS}{path}", query=query, description=text)
    for name, path, query, text in (
        (
            "energy-intensity",
            "/buildings/{buildingId}/energy-intensity",
            "from, to",
            "kWh per m² per year, extrapolated from the hours with data",
        ),
        (
            "baseline",
            "/buildings/{buildingId}/baseline",
            "from, to, step (1h|1d), method (previous-year|trailing), weeks",
            "energy per bucket against the same bucket a year or some weeks earlier",
        ),
        (
            "occupancy-normalised",
            "/buildings/{buildingId}/occupancy-normalised",
            "from, to, step (1h|1d)",
            "energy per person-hour counted by occupancy sensors",
        ),
        (
            "anomalies",
            "/sensors/{sensorId}/anomalies",
            "from, to, threshold, limit",
            "readings far from the sensor's median (robust z-score)",
        ),
        (
            "top-consumers",
            "/top-consumers",
            "from, to, by (kwh|intensity), limit",
            "buildings ranked by energy or by energy per m²",
        ),
    )
]


@router.get("/analytics", response_model=Envelope[AnalyticsOverview])
async def analytics_overview(
    session: SessionDep, runtime: RuntimeDep, _: CurrentPrincipal
) -> Envelope[AnalyticsOverview]:
    return envelope(await analytics.overview(session, runtime.cache, ANALYTICS_REPORTS))


@router.get(
    "/analytics/buildings/{building_id}/energy-intensity",
    response_model=Envelope[EnergyIntensity],
)
async def energy_intensity(
    building_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    _: CurrentPrincipal,
    start: From,
    end: To,
) -> Envelope[EnergyIntensity]:
    return envelope(
        await analytics.energy_intensity(session, runtime.cache, building_id, start, end)
    )


@router.get("/analytics/buildings/{building_id}/baseline", response_model=Envelope[BaselineReport])
async def energy_baseline(
    building_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    _: CurrentPrincipal,
    start: From,
    end: To,
    step: AnalyticsStep = "1d",
    method: BaselineMethod = "previous-year",
    weeks: Annotated[int, Query(ge=1, le=52)] = 4,
) -> Envelope[BaselineReport]:
    report = await analytics.baseline(
        session,
        runtime.cache,
        building_id,
        start=start,
        end=end,
        step=step,
        method=method,
        weeks=weeks,
    )
    return envelope(report)


@router.get(
    "/analytics/buildings/{building_id}/occupancy-normalised",
    response_model=Envelope[OccupancyReport],
)
async def occupancy_normalised(
    building_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    _: CurrentPrincipal,
    start: From,
    end: To,
    step: AnalyticsStep = "1d",
) -> Envelope[OccupancyReport]:
    report = await analytics.occupancy_normalised(
        session, runtime.cache, building_id, start=start, end=end, step=step
    )
    return envelope(report)


@router.get("/analytics/sensors/{sensor_id}/anomalies", response_model=Envelope[AnomalyReport])
async def sensor_anomalies(
    sensor_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    _: CurrentPrincipal,
    start: From,
    end: To,
    threshold: Annotated[float, Query(gt=0, le=100)] = 3.5,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> Envelope[AnomalyReport]:
    report = await analytics.anomalies(
        session, runtime.cache, sensor_id, start=start, end=end, threshold=threshold, limit=limit
    )
    return envelope(report)


@router.get("/analytics/top-consumers", response_model=Envelope[TopConsumers])
async def top_consumers(
    session: SessionDep,
    runtime: RuntimeDep,
    _: CurrentPrincipal,
    start: From,
    end: To,
    by: Literal["kwh", "intensity"] = "kwh",
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Envelope[TopConsumers]:
    report = await analytics.top_consumers(
        session, runtime.cache, start=start, end=end, by=by, limit=limit
    )
    return envelope(report)


@router.get("/alerts/rules", response_model=Envelope[list[AlertRuleOut]])
async def list_alert_rules(
    session: SessionDep, _: CurrentPrincipal, sensor: str | None = None
) -> Envelope[list[AlertRuleOut]]:
    rules = await alerts.list_rules(session, sensor)
    return envelope([AlertRuleOut.model_validate(rule) for rule in rules])


@router.post(
    "/alerts/rules",
    status_code=201,
    response_model=Envelope[AlertRuleOut],
    responses={404: {"description": "The sensor or building named is not found"}},
)
async def create_alert_rule(
    body: AlertRuleIn, session: SessionDep, runtime: RuntimeDep, _: ManagerUser
) -> Envelope[AlertRuleOut]:
    rule = await alerts.create_rule(session, body)
    ingest.announce_alerts(session, runtime, await alerts.evaluate_sensor(session, body.sensor_id))
    return envelope(AlertRuleOut.model_validate(rule))


@router.delete("/alerts/rules/{rule_id}", status_code=204)
async def delete_alert_rule(rule_id: str, session: SessionDep, _: ManagerUser) -> Response:
    await alerts.delete_rule(session, rule_id)
    return Response(status_code=204)


@router.get("/alerts", response_model=Envelope[list[AlertOut]])
async def list_alerts(
    session: SessionDep,
    _: CurrentPrincipal,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    building: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Envelope[list[AlertOut]]:
    rows = await alerts.list_alerts(session, status=status, building_id=building, limit=limit)
    return envelope([AlertOut.model_validate(row) for row in rows])


@router.get("/alerts/{alert_id}", response_model=Envelope[AlertOut])
async def get_alert(alert_id: str, session: SessionDep, _: CurrentPrincipal) -> Envelope[AlertOut]:
    return envelope(AlertOut.model_validate(await alerts.get_alert(session, alert_id)))


@router.post(
    "/alerts/{alert_id}/acknowledge",
    response_model=Envelope[AlertOut],
    responses={409: {"description": "Only open alerts can be acknowledged"}},
)
async def acknowledge_alert(
    alert_id: str, session: SessionDep, principal: ManagerUser
) -> Envelope[AlertOut]:
    alert = await alerts.acknowledge(session, alert_id, principal.subject)
    return envelope(AlertOut.model_validate(alert))


@router.post(
    "/alerts/{alert_id}/resolve",
    response_model=Envelope[AlertOut],
    responses={409: {"description": "Alert is already resolved"}},
)
async def resolve_alert(
    alert_id: str, session: SessionDep, runtime: RuntimeDep, principal: ManagerUser
) -> Envelope[AlertOut]:
    alert = await alerts.resolve(session, alert_id, principal.subject)
    ingest.announce_alerts(session, runtime, [alert])
    return envelope(AlertOut.model_validate(alert))
