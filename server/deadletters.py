"""Dead letters: events a consumer refused, kept with the reason for operators.

Every consumer (the hub's indexer, a node's inbox) records what it cannot accept here and
moves on, so one bad message never stops the flow and nothing refused is silently lost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from pydantic import BaseModel
from sqlalchemy import JSON, Column, Text, case, func, or_
from sqlmodel import Field as SQLField
from sqlmodel import Session, SQLModel, col, select

from ctta.server.db import UtcDateTime

MAX_BODY = 64 * 1024

# Reasons are free text with ids in them; metrics group them into these few classes (LIKE
# patterns over the messages of ctta.protocol.envelope, the indexer and the inbox, first
# match wins) so a label never carries an id. Anything new shows up as "other".
REASON_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("signature", ("bad signature%", "event is not signed")),
    (
        "provenance",
        (
            "signing key %",
            "subject centre %",
            "source %",
            "ce-subject %",
            "centre % is not a party to match %",
            "match % does not involve %",
        ),
    ),
    ("stale", ("stale %", "response % is not newer than %", "match % was retracted", "no match %")),
    ("private", ("a private record %",)),
    ("schema", ("data does not match %", "not a % message: %")),
    (
        "envelope",
        (
            "no ce-* headers%",
            "bad envelope: %",
            "body %",
            "type % does not fit %",
            "% differ from the envelope",
            "% events are not indexed",
            "unknown route kind %",
        ),
    ),
    ("unapplicable", ("could not be applied: %",)),
)


class DeadLetter(SQLModel, table=True):
    """A message a consumer refused, with the reason; kept for operators, never applied."""

    __tablename__ = "dead_letter"

    id: int | None = SQLField(default=None, primary_key=True)
    received_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    stream_seq: int | None = SQLField(default=None, index=True)
    subject: str = SQLField(max_length=512)
    event_id: str | None = SQLField(default=None, max_length=64)
    centre: str | None = SQLField(default=None, max_length=64)
    reason: str = SQLField(sa_column=Column(Text, nullable=False))
    headers: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    body: str = SQLField(sa_column=Column(Text, nullable=False))


class DeadLetterRead(BaseModel):
    id: int
    received_at: datetime
    stream_seq: int | None
    subject: str
    event_id: str | None
    centre: str | None
    reason: str


def record(
    session: Session,
    *,
    subject: str,
    headers: dict[str, str] | None,
    body: bytes,
    reason: str,
    stream_seq: int | None,
) -> None:
    """Record a refused event once per stream position (a replay does not duplicate it)."""
    if stream_seq is not None:
        seen = session.exec(
            select(DeadLetter.id).where(DeadLetter.stream_seq == stream_seq)
        ).first()
        if seen is not None:
            return
    headers = headers or {}
    session.add(
        DeadLetter(
            received_at=datetime.now(UTC),
            stream_seq=stream_seq,
            subject=subject[:512],
            event_id=(headers.get("ce-id") or "")[:64] or None,
            centre=(headers.get("ce-centre") or "")[:64] or None,
            reason=reason,
            headers=headers,
            # PostgreSQL text cannot hold NUL; a hostile body must still be recordable.
            body=body[:MAX_BODY].decode("utf-8", errors="replace").replace("\x00", "\\0"),
        )
    )


def record_message(session: Session, msg: Msg, reason: str) -> None:
    """Record a refused NATS message (a consumer's common case of `record`)."""
    record(
        session,
        subject=msg.subject,
        headers=msg.headers,
        body=msg.data,
        reason=reason,
        stream_seq=msg.metadata.sequence.stream if msg.reply else None,
    )


def latest(
    session: Session, *, centre: str | None, before_id: int | None, limit: int
) -> list[DeadLetterRead]:
    """Newest first; `before_id` pages backwards."""
    statement = select(DeadLetter).order_by(col(DeadLetter.id).desc()).limit(limit)
    if centre:
        statement = statement.where(DeadLetter.centre == centre)
    if before_id:
        statement = statement.where(col(DeadLetter.id) < before_id)
    return [
        DeadLetterRead.model_validate(row, from_attributes=True) for row in session.exec(statement)
    ]


def counts_by_reason(session: Session) -> dict[tuple[str, str], int]:
    """Dead letters per (centre, reason class), counted in the database."""
    reason = col(DeadLetter.reason)
    reason_class = case(
        *((or_(*(reason.like(p) for p in patterns)), name) for name, patterns in REASON_CLASSES),
        else_="other",
    )
    # Grouped over a subquery: PostgreSQL refuses to group by an expression whose bound
    # parameters differ from those of the select list.
    rows = select(
        func.coalesce(DeadLetter.centre, "").label("centre"), reason_class.label("reason")
    ).subquery()
    statement = select(rows.c.centre, rows.c.reason, func.count()).group_by(
        rows.c.centre, rows.c.reason
    )
    return {(centre, reason): count for centre, reason, count in session.exec(statement)}
