"""Outbox reads and writes; every function takes the session it works in."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from ctta.protocol.envelope import WireEvent
from ctta.server.outbox.models import OutboxEvent


def enqueue(session: Session, event: WireEvent, *, kind: str, record_id: str, version: int) -> None:
    """Add an event to the outbox inside the caller's transaction."""
    session.add(
        OutboxEvent(
            event_id=event.event_id,
            record_kind=kind,
            record_id=record_id,
            record_version=version,
            subject=event.subject,
            headers=event.headers,
            body=event.body,
            created_at=datetime.now(UTC),
        )
    )


def pending(session: Session, limit: int) -> list[OutboxEvent]:
    """The oldest unpublished events, in the order they were written."""
    statement = (
        select(OutboxEvent)
        .where(col(OutboxEvent.published_at).is_(None))
        .order_by(col(OutboxEvent.seq))
        .limit(limit)
    )
    return list(session.exec(statement))


def mark_published(session: Session, seqs: list[int], when: datetime) -> None:
    session.execute(
        update(OutboxEvent).where(col(OutboxEvent.seq).in_(seqs)).values(published_at=when)
    )


def record_failure(session: Session, seq: int, error: str) -> None:
    session.execute(
        update(OutboxEvent)
        .where(col(OutboxEvent.seq) == seq)
        .values(attempts=OutboxEvent.attempts + 1, last_error=error[:500])
    )


def last_seq(session: Session) -> int | None:
    """The newest row's position: unchanged means nothing was enqueued since."""
    return session.exec(select(func.max(OutboxEvent.seq))).one()


def backlog(session: Session) -> int:
    statement = (
        select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.published_at).is_(None))
    )
    return session.exec(statement).one()


def last_published_at(session: Session) -> datetime | None:
    return session.exec(select(func.max(OutboxEvent.published_at))).one()
