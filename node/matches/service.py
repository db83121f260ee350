"""Inbox rows: idempotent storage of routed proposals and the listing queries."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, col, or_, select

from ctta.node.matches.models import InboxMatch, MatchRead
from ctta.protocol.matches import MatchExplanation, MatchProposal


def store(session: Session, proposal: MatchProposal) -> bool:
    """Keep the newest revision; returns False for a revision already held (a replay)."""
    row = session.get(InboxMatch, proposal.match_id)
    if row is not None and row.revision >= proposal.revision:
        return False
    now = datetime.now(UTC)
    row = row or InboxMatch(
        id=proposal.match_id,
        revision=proposal.revision,
        status=proposal.status,
        demand_centre=proposal.demand.centre,
        demand_id=proposal.demand.id,
        achievement_centre=proposal.achievement.centre,
        achievement_id=proposal.achievement.id,
        score=proposal.score,
        explanation={},
        titles={},
        received_at=now,
        updated_at=now,
    )
    row.revision, row.status, row.score = proposal.revision, proposal.status, proposal.score
    row.explanation = proposal.explanation.model_dump(mode="json")
    row.titles = {"demand": proposal.demand_title, "achievement": proposal.achievement_title}
    row.updated_at = now
    session.add(row)
    return True


def page(
    session: Session,
    *,
    status: str | None,
    record_id: str | None,
    min_score: float | None,
    offset: int,
    limit: int,
) -> tuple[list[InboxMatch], int | None]:
    statement = select(InboxMatch).order_by(col(InboxMatch.score).desc(), col(InboxMatch.id))
    if status:
        statement = statement.where(InboxMatch.status == status)
    if record_id:
        statement = statement.where(
            or_(InboxMatch.demand_id == record_id, InboxMatch.achievement_id == record_id)
        )
    if min_score is not None:
        statement = statement.where(col(InboxMatch.score) >= min_score)
    rows = list(session.exec(statement.offset(offset).limit(limit + 1)))
    return rows[:limit], offset + limit if len(rows) > limit else None


def read(row: InboxMatch) -> MatchRead:
    return MatchRead(
        id=row.id,
        revision=row.revision,
        status=row.status,
        demand={"centre": row.demand_centre, "id": row.demand_id},
        achievement={"centre": row.achievement_centre, "id": row.achievement_id},
        score=row.score,
        explanation=MatchExplanation(**row.explanation),
        titles=row.titles,
        stage=row.stage,
        reason=row.reason,
        reason_text=row.reason_text,
        updated_at=row.updated_at,
    )
