"""The outbox table: serialised, signed events waiting to be (or already) published."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, text
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from ctta.server.db import UtcDateTime


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox_event"
    __table_args__ = (
        Index(
            "ix_outbox_unsent",
            "seq",
            sqlite_where=text("published_at IS NULL"),
            postgresql_where=text("published_at IS NULL"),
        ),
    )

    seq: int | None = SQLField(default=None, primary_key=True, description="Local total order")
    event_id: str = SQLField(max_length=26, unique=True)
    record_kind: str = SQLField(max_length=16)
    record_id: str = SQLField(max_length=26)
    record_version: int
    subject: str = SQLField(max_length=255)
    headers: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    body: bytes = SQLField(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    published_at: datetime | None = SQLField(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )
    attempts: int = 0
    last_error: str | None = None
