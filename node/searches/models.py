"""Saved-search and alert tables of the node, and their API models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, Column
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from ctta.protocol.searches import SearchQuery
from ctta.server.db import UtcDateTime


class SavedSearchRow(SQLModel, table=True):
    __tablename__ = "saved_search"

    id: str = SQLField(primary_key=True, max_length=26)
    version: int
    status: str = SQLField(default="active", max_length=16)
    query: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    created_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))


class AlertRow(SQLModel, table=True):
    __tablename__ = "search_alert"

    id: str = SQLField(primary_key=True, max_length=25)
    search_id: str = SQLField(max_length=26, index=True)
    record_centre: str = SQLField(max_length=32)
    record_id: str = SQLField(max_length=26)
    kind: str = SQLField(max_length=16)
    version: int
    title: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    received_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))


class SavedSearchRead(SearchQuery):
    id: str
    version: int
    status: str
    updated_at: datetime


class AlertRead(BaseModel):
    id: str
    search_id: str
    record: dict[str, str]
    kind: str
    version: int
    title: dict[str, Any]
    received_at: datetime
