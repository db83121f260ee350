"""The inbox of routed matches and the response API models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import JSON, Column
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from ctta.protocol.matches import MatchExplanation
from ctta.protocol.taxonomy import DeclineReason, MatchStage
from ctta.server.db import UtcDateTime


class InboxMatch(SQLModel, table=True):
    """A proposal as routed to this centre, and this centre's stage on it."""

    __tablename__ = "inbox_match"

    id: str = SQLField(primary_key=True, max_length=25)
    revision: int
    status: str = SQLField(max_length=16, index=True, description="proposed or retracted")
    demand_centre: str = SQLField(max_length=32)
    demand_id: str = SQLField(max_length=26, index=True)
    achievement_centre: str = SQLField(max_length=32)
    achievement_id: str = SQLField(max_length=26, index=True)
    score: float
    explanation: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    titles: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    stage: str = SQLField(default=MatchStage.PROPOSED.value, max_length=24)
    sequence: int = 0
    reason: str | None = None
    reason_text: str | None = None
    received_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))


class MatchRead(BaseModel):
    id: str
    revision: int
    status: str
    demand: dict[str, str]
    achievement: dict[str, str]
    score: float
    explanation: MatchExplanation
    titles: dict[str, Any]
    stage: MatchStage
    reason: DeclineReason | None
    reason_text: str | None
    updated_at: datetime


class MatchPage(BaseModel):
    items: list[MatchRead]
    next_offset: int | None = None


class ResponseRequest(BaseModel):
    """Accept or decline a proposal, or move an accepted one along the pipeline."""

    stage: MatchStage = Field(description="accepted, declined, contacted, nda, negotiating, …")
    reason: DeclineReason | None = Field(default=None, description="Required when declining")
    reason_text: str | None = Field(default=None, max_length=2000)
