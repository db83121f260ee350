"""Match payloads: the hub's proposals (routes) and the centres' responses (events)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from ctta.protocol.records import CentreId, RecordRef, StrictModel, Version
from ctta.protocol.taxonomy import MATCH_TRANSITIONS, DeclineReason, MatchStage

RESPONSE_TYPE = "org.ctta.match.responded.v1"

MatchId = Annotated[str, StringConstraints(pattern=r"^m[0-9a-f]{24}$")]


def match_id(demand: RecordRef, achievement: RecordRef) -> str:
    """Deterministic: the same pair always has the same id, so a replay never duplicates it."""
    key = f"{demand.centre}/{demand.id}|{achievement.centre}/{achievement.id}"
    return "m" + hashlib.sha256(key.encode()).hexdigest()[:24]


def can_move(current: MatchStage, target: MatchStage) -> bool:
    return target in MATCH_TRANSITIONS[current]


class MatchExplanation(StrictModel):
    shared_terms: list[str]
    lexical_rank: int | None
    semantic_similarity: float | None
    semantic_rank: int | None
    fields_shared: list[str]
    ipc_shared: list[str]
    trl: str
    modes_shared: list[str]
    budget: str
    local: bool
    notes: list[str] = Field(default_factory=list)


class MatchProposal(StrictModel):
    """Data of `org.ctta.match.<proposed|retracted>.v1` on `ctta.v1.route.<centre>.match.<id>`."""

    match_id: MatchId
    revision: int = Field(ge=1, description="Grows with every rescoring or retraction")
    status: Literal["proposed", "retracted"]
    demand: RecordRef
    achievement: RecordRef
    score: float
    threshold: float
    explanation: MatchExplanation
    demand_title: dict[str, str | None] = Field(default_factory=dict)
    achievement_title: dict[str, str | None] = Field(default_factory=dict)
    proposed_at: datetime


class MatchResponse(StrictModel):
    """Data of `org.ctta.match.responded.v1` on `ctta.v1.evt.<centre>.response.<match_id>`."""

    match_id: MatchId
    centre: CentreId
    sequence: Version = Field(description="This centre's n-th step on this match")
    stage: MatchStage
    previous_stage: MatchStage
    reason: DeclineReason | None = None
    reason_text: Annotated[str, StringConstraints(max_length=2000)] | None = None
    responded_at: datetime

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not can_move(self.previous_stage, self.stage):
            raise ValueError(f"cannot move from {self.previous_stage} to {self.stage}")
        if self.stage == MatchStage.DECLINED and self.reason is None:
            raise ValueError("a decline needs a reason code")
        if self.reason == DeclineReason.OTHER and not self.reason_text:
            raise ValueError("reason 'other' needs reason_text")
        return self
