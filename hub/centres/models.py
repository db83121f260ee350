"""Centre liveness and sync tables, and the `/centres` response."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import JSON, Column
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from ctta.server.db import UtcDateTime


class CentreHeartbeat(SQLModel, table=True):
    """The newest heartbeat of each centre's node."""

    __tablename__ = "centre_heartbeat"

    centre: str = SQLField(primary_key=True, max_length=32)
    received_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    node_url: str | None = None
    outbox_backlog: int = 0
    counts: dict[str, Any] = SQLField(default_factory=dict, sa_column=Column(JSON, nullable=False))
    manifest_count: int | None = None
    manifest_digest: str | None = SQLField(default=None, max_length=64)


class CentreSync(SQLModel, table=True):
    """Anti-entropy state of one centre: the last comparison and the repairs it caused."""

    __tablename__ = "centre_sync"

    centre: str = SQLField(primary_key=True, max_length=32)
    node_count: int
    node_digest: str = SQLField(max_length=64)
    hub_count: int
    hub_digest: str = SQLField(max_length=64)
    in_sync: bool
    checked_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    mismatched_checks: int = SQLField(default=0, description="Consecutive checks that differed")
    mismatched_since: datetime | None = SQLField(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )
    repairs_requested: int = 0
    repairs_since_in_sync: int = 0
    last_repair_requested_at: datetime | None = SQLField(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )
    last_request_id: str | None = SQLField(default=None, max_length=26)
    last_in_sync_at: datetime | None = SQLField(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )


class SyncView(BaseModel):
    """The hub's index compared with the centre's manifest (from its latest heartbeat)."""

    node_count: int
    node_digest: str
    hub_count: int
    hub_digest: str
    in_sync: bool
    checked_at: datetime
    mismatched_since: datetime | None = Field(description="Start of the current mismatch")
    repairs_requested: int = Field(description="Resync requests sent to the centre, ever")
    last_repair_requested_at: datetime | None
    last_in_sync_at: datetime | None


class CentreView(BaseModel):
    id: str
    name_zh: str
    name_en: str
    city: str
    node_url: str | None
    alive: bool
    last_heartbeat_at: datetime | None
    outbox_backlog: int | None
    counts: dict[str, int]
    node_counts: dict[str, int] | None
    last_event_at: datetime | None
    lag_seconds: float | None
    sync: SyncView | None = Field(
        description="Anti-entropy: null until the hub has compared this centre once"
    )
