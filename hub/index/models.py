"""The index table (one row per federation record, tombstones kept) and search models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from ctta.server.db import UtcDateTime


class IndexedRecord(SQLModel, table=True):
    """The newest known state of a record.

    A withdrawn record keeps its row (`withdrawn`, no data) so that a late, older event
    cannot bring it back: the version gate needs the tombstone's version.
    """

    __tablename__ = "indexed_record"
    __table_args__ = (
        UniqueConstraint("centre", "kind", "record_id", name="uq_indexed_record"),
        Index("ix_indexed_record_live", "withdrawn", "kind", "centre"),
    )

    pk: int | None = SQLField(default=None, primary_key=True)
    centre: str = SQLField(max_length=32)
    kind: str = SQLField(max_length=16)
    record_id: str = SQLField(max_length=26)
    version: int
    withdrawn: bool = False
    status: str = SQLField(default="", max_length=16)
    visibility: str = SQLField(default="", max_length=16)
    trl: int | None = None
    fields_text: str = SQLField(default="", sa_column=Column(Text, nullable=False))
    data: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSON, nullable=True))
    event_id: str = SQLField(max_length=26)
    event_time: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    indexed_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))


class SearchHit(BaseModel):
    kind: str
    centre: str
    id: str
    version: int
    score: float
    title: dict[str, str | None]
    summary: dict[str, str | None]
    fields: list[str]
    trl: int | None
    visibility: str
    updated_at: datetime | None


class SearchPage(BaseModel):
    total: int
    hits: list[SearchHit]
    facets: dict[str, dict[str, int]] = Field(
        description="Counts by kind, centre, field and trl over all matches"
    )
    next_offset: int | None = None
