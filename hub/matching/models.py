"""Match and vector tables of the hub, and the preview/listing API models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import JSON, Column, Index, LargeBinary
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from ctta.protocol.matches import MatchExplanation
from ctta.protocol.records import AchievementContent, DemandContent
from ctta.server.db import UtcDateTime


class Match(SQLModel, table=True):
    """A proposed pair and where each side stands on it."""

    __tablename__ = "match"
    __table_args__ = (
        Index("ix_match_demand", "demand_centre", "demand_id"),
        Index("ix_match_achievement", "achievement_centre", "achievement_id"),
    )

    id: str = SQLField(primary_key=True, max_length=25)
    revision: int
    status: str = SQLField(max_length=16, description="proposed or retracted")
    demand_centre: str = SQLField(max_length=32)
    demand_id: str = SQLField(max_length=26)
    achievement_centre: str = SQLField(max_length=32)
    achievement_id: str = SQLField(max_length=26)
    score: float
    explanation: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    demand_stage: str = SQLField(default="proposed", max_length=24)
    achievement_stage: str = SQLField(default="proposed", max_length=24)
    demand_sequence: int = 0
    achievement_sequence: int = 0
    local: bool = False
    created_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))


class RecordVector(SQLModel, table=True):
    """A record's embedding, kept so a hub restart does not re-embed the federation."""

    __tablename__ = "record_vector"

    key: str = SQLField(primary_key=True, max_length=100, description="centre/kind/id")
    version: int
    model: str = SQLField(max_length=64)
    vector: bytes = SQLField(sa_column=Column(LargeBinary, nullable=False))


class PreviewRequest(BaseModel):
    """A demand- or achievement-shaped record to try against the federation."""

    kind: str = Field(pattern="^(demand|achievement)$")
    centre: str | None = Field(default=None, description="Your centre, to label local pairs")
    demand: DemandContent | None = None
    achievement: AchievementContent | None = None
    limit: int = Field(default=10, ge=1, le=100)


class ProposalView(BaseModel):
    demand: dict[str, str]
    achievement: dict[str, str]
    score: float
    above_threshold: bool
    explanation: MatchExplanation
    title: dict[str, str | None] = {}


class MatchView(BaseModel):
    id: str
    revision: int
    status: str
    demand: dict[str, str]
    achievement: dict[str, str]
    score: float
    local: bool
    demand_stage: str
    achievement_stage: str
    explanation: MatchExplanation
    updated_at: datetime
