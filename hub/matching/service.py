"""Match rows, record vectors and the translation between index rows and engine documents."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from sqlmodel import Session, col, or_, select

from ctta.hub.index.models import IndexedRecord
from ctta.hub.matching.engine import MatchDoc, Proposal, RecordKey, doc_terms
from ctta.hub.matching.models import Match, MatchView, RecordVector
from ctta.protocol.matches import MatchExplanation, MatchResponse, can_move, match_id
from ctta.protocol.records import RecordRef
from ctta.protocol.taxonomy import MatchStage, RecordStatus

MATCHED_KINDS = ("achievement", "demand")
SCORE_EPSILON = 0.01


def _joined(data: dict[str, Any], name: str) -> str:
    value = data.get(name) or {}
    return (
        " ".join(v for v in (value.get("zh"), value.get("en")) if v)
        if isinstance(value, dict)
        else str(value)
    )


def match_doc(data: dict[str, Any]) -> MatchDoc:
    """The engine's view of a published achievement or demand (JSON of the protocol model)."""
    kind = data["kind"]
    text_parts = [
        _joined(data, "title"),
        _joined(data, "summary"),
        " ".join(data.get("keywords", [])),
    ]
    for name in ("description", "problem_statement", "applications", "advantages"):
        text_parts.append(_joined(data, name))
    price = data.get("price_range") or {}
    budget = data.get("budget") or {}
    deadline = data.get("response_deadline")
    return MatchDoc(
        key=RecordKey(data["centre"], kind, data["id"]),
        terms=doc_terms(" ".join(text_parts)),
        embed_text=" ".join(p for p in text_parts[:3] if p),
        fields=frozenset(data.get("fields", [])),
        ipc=frozenset(data.get("ipc", [])),
        trl=data.get("trl"),
        min_trl=data.get("min_trl"),
        modes=frozenset(data.get("transfer_modes") or data.get("cooperation_modes") or []),
        price_min=price.get("min"),
        budget_max=budget.get("max"),
        deadline=date.fromisoformat(deadline) if deadline else None,
        active=data.get("status", RecordStatus.ACTIVE.value) == RecordStatus.ACTIVE.value,
    )


def live_records(session: Session) -> list[dict[str, Any]]:
    statement = select(IndexedRecord.data).where(
        col(IndexedRecord.withdrawn).is_(False), col(IndexedRecord.kind).in_(MATCHED_KINDS)
    )
    return [data for data in session.exec(statement) if data]


def vectors(session: Session, model: str) -> dict[str, tuple[int, np.ndarray]]:
    rows = session.exec(select(RecordVector).where(RecordVector.model == model))
    return {row.key: (row.version, np.frombuffer(row.vector, dtype=np.float32)) for row in rows}


def save_vector(
    session: Session, key: RecordKey, version: int, model: str, vector: np.ndarray
) -> None:
    row = session.get(RecordVector, str(key)) or RecordVector(
        key=str(key), version=version, model=model, vector=b""
    )
    row.version, row.model, row.vector = version, model, vector.astype(np.float32).tobytes()
    session.add(row)


def upsert_proposal(session: Session, proposal: Proposal) -> Match | None:
    """Store a proposal; returns the row when it is new or materially changed (to be routed)."""
    demand = RecordRef(centre=proposal.demand.centre, id=proposal.demand.id)
    achievement = RecordRef(centre=proposal.achievement.centre, id=proposal.achievement.id)
    identifier = match_id(demand, achievement)
    now = datetime.now(UTC)
    explanation = proposal.explanation.model_dump(mode="json")
    row = session.get(Match, identifier)
    if row is None:
        row = Match(
            id=identifier,
            revision=1,
            status="proposed",
            demand_centre=demand.centre,
            demand_id=demand.id,
            achievement_centre=achievement.centre,
            achievement_id=achievement.id,
            score=proposal.score,
            explanation=explanation,
            local=proposal.explanation.local,
            created_at=now,
            updated_at=now,
        )
    elif row.status == "proposed" and abs(row.score - proposal.score) < SCORE_EPSILON:
        return None
    else:
        row.revision += 1
        row.status, row.score, row.explanation, row.updated_at = (
            "proposed",
            proposal.score,
            explanation,
            now,
        )
    session.add(row)
    return row


def open_matches_of(session: Session, key: RecordKey) -> list[Match]:
    if key.kind == "demand":
        condition = (Match.demand_centre == key.centre) & (Match.demand_id == key.id)
    else:
        condition = (Match.achievement_centre == key.centre) & (Match.achievement_id == key.id)
    return list(session.exec(select(Match).where(condition, Match.status == "proposed")))


def open_record_keys(session: Session) -> set[RecordKey]:
    """Every record some open proposal names: compared at start-up with the live index."""
    rows = session.exec(
        select(
            Match.demand_centre, Match.demand_id, Match.achievement_centre, Match.achievement_id
        ).where(Match.status == "proposed")
    )
    keys = set()
    for demand_centre, demand_id, achievement_centre, achievement_id in rows:
        keys.add(RecordKey(demand_centre, "demand", demand_id))
        keys.add(RecordKey(achievement_centre, "achievement", achievement_id))
    return keys


def retract(session: Session, row: Match) -> Match:
    row.revision += 1
    row.status = "retracted"
    row.updated_at = datetime.now(UTC)
    session.add(row)
    return row


DUPLICATE = "duplicate"


def apply_response(session: Session, response: MatchResponse) -> str | None:
    """Move one side of a match.

    Returns None when applied, `DUPLICATE` for a redelivery of the step already applied,
    or the reason the response must be refused.
    """
    row = session.get(Match, response.match_id)
    if row is None:
        return f"no match {response.match_id}"
    if response.centre == row.demand_centre:
        side = "demand"
    elif response.centre == row.achievement_centre:
        side = "achievement"
    else:
        return f"centre {response.centre!r} is not a party to match {response.match_id}"
    if row.status != "proposed":
        return f"match {response.match_id} was retracted"
    stage = MatchStage(getattr(row, f"{side}_stage"))
    sequence = getattr(row, f"{side}_sequence")
    if response.sequence == sequence and stage == response.stage:
        return DUPLICATE
    if response.sequence <= sequence:
        return f"response {response.sequence} of {response.centre} is not newer than {sequence}"
    if stage != response.previous_stage or not can_move(stage, response.stage):
        return (
            f"out of order: the {side} side is {stage.value}, cannot move to {response.stage.value}"
        )
    setattr(row, f"{side}_stage", response.stage.value)
    setattr(row, f"{side}_sequence", response.sequence)
    row.updated_at = datetime.now(UTC)
    session.add(row)
    return None


def list_matches(
    session: Session,
    *,
    centre: str | None,
    status: str | None,
    min_score: float | None,
    limit: int,
    offset: int,
) -> list[MatchView]:
    statement = (
        select(Match).order_by(col(Match.score).desc(), col(Match.id)).offset(offset).limit(limit)
    )
    if centre:
        statement = statement.where(
            or_(Match.demand_centre == centre, Match.achievement_centre == centre)
        )
    if status:
        statement = statement.where(Match.status == status)
    if min_score is not None:
        statement = statement.where(col(Match.score) >= min_score)
    return [view(row) for row in session.exec(statement)]


def view(row: Match) -> MatchView:
    return MatchView(
        id=row.id,
        revision=row.revision,
        status=row.status,
        demand={"centre": row.demand_centre, "id": row.demand_id},
        achievement={"centre": row.achievement_centre, "id": row.achievement_id},
        score=row.score,
        local=row.local,
        demand_stage=row.demand_stage,
        achievement_stage=row.achievement_stage,
        explanation=MatchExplanation(**row.explanation),
        updated_at=row.updated_at,
    )
