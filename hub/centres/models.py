"""Centre liveness table and the `/centres` response."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
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
