"""The JSON API's shapes, so /api/openapi.json describes exactly what is served."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class IncidentOut(BaseModel):
    id: int
    state: str
    severity: str
    title: str
    symptom: str
    cause: str
    fix: str
    detector: str
    service: str
    account: str
    resource: str
    labels: dict[str, str]
    started_at: int
    firing_at: int | None
    updated_at: int
    resolved_at: int | None
    acked_by: str | None
    acked_at: int | None
    absorbed_into: int | None


class AlertOut(BaseModel):
    detector: str
    resource: str
    state: str
    severity: str
    title: str
    cause: str
    evidence: dict[str, Any]


class IncidentDetail(IncidentOut):
    events: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    alerts: list[AlertOut]


class ResourceOut(BaseModel):
    id: str
    kind: str
    name: str
    account: str
    region: str
    arn: str
    facts: dict[str, Any]
    tags: dict[str, Any]
    first_seen: int | None
    last_seen: int | None


class ResourceDetail(ResourceOut):
    series: list[dict[str, Any]]
    incidents: list[IncidentOut]


class Page(BaseModel):
    total: int
    page: int
    per_page: int
    items: list[ResourceOut]


class SeriesOut(BaseModel):
    id: int
    resource_id: str
    namespace: str
    metric: str
    stat: str
    period: int
    points: list[tuple[int, float]]


class SilenceIn(BaseModel):
    matchers: str = Field(
        ..., min_length=1, max_length=2000, description='Alertmanager matchers, e.g. service="checkout"'
    )
    duration_seconds: int = Field(3600, ge=60, le=90 * 86400)
    comment: str = Field("", max_length=2000)


class SilenceOut(BaseModel):
    id: int
    matchers: str
    starts_at: int
    ends_at: int
    author: str | None
    comment: str | None
    created_at: int | None
    expired_at: int | None
    active: bool


class Ack(BaseModel):
    incident_id: int
    acknowledged: bool = Field(description="false when it was already acknowledged or resolved")
    by: str


class Health(BaseModel):
    live: bool
    ready: bool
    store: str
    last_poll_age: int | None
