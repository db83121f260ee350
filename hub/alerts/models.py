"""The hub's copy of every centre's saved searches."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel


class StandingQuery(SQLModel, table=True):
    __tablename__ = "standing_query"

    id: str = SQLField(primary_key=True, max_length=26)
    centre: str = SQLField(max_length=32, index=True)
    version: int
    active: bool = True
    query: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
