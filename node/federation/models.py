"""Response models of the federation endpoints and the heartbeat payload."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ManifestEntry(BaseModel):
    kind: str
    id: str
    version: int


class Manifest(BaseModel):
    """What the federation should hold of this centre: count and digest of (kind, id, version)."""

    centre: str
    count: int
    digest: str = Field(description="sha256 over sorted 'kind/id/version' lines")
    records: list[ManifestEntry] | None = Field(
        default=None, description="Present with ?include=records"
    )


class FederationStatus(BaseModel):
    centre: str
    nats: str = Field(description="connected, disconnected, connecting or closed")
    outbox_backlog: int
    published_since_start: int
    last_published_at: datetime | None
    last_publish_error: str | None
    task_restarts: dict[str, int] = Field(
        default_factory=dict, description="Background loops restarted after an error, by name"
    )
