"""Dead letters: events a consumer refused, kept with the reason for operators.

Every consumer (the hub's indexer, a node's inbox) records what it cannot accept here and
moves on, so one bad message never stops the flow and nothing refused is silently lost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from pydantic import BaseModel
from sqlalchemy import JSON, Column, Text
from sqlmodel import Field as SQLField
from sqlmodel import Session, SQLModel, col, select

from ctta.server.db import UtcDateTime

MAX_BODY = 64 * 1024


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
