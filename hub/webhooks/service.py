"""Queueing deliveries with the ingest transaction, and the delivery bookkeeping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from ctta.hub.webhooks.models import Delivery, Webhook
from ctta.protocol.envelope import ReceivedEvent, to_structured

MAX_ATTEMPTS = 8
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 300.0


def active_webhooks(session: Session) -> list[Webhook]:
    return list(session.exec(select(Webhook).where(col(Webhook.active).is_(True))))


def wants(webhook: Webhook, event: ReceivedEvent) -> bool:
    envelope = event.envelope
    return (not webhook.event_types or envelope.type in webhook.event_types) and (
        not webhook.centres or envelope.centre in webhook.centres
    )


def enqueue(session: Session, webhooks: list[Webhook], event: ReceivedEvent) -> int:
    """Queue an applied event for every webhook that wants it, in the ingest transaction."""
    now = datetime.now(UTC)
    body: str | None = None
    queued = 0
    for webhook in webhooks:
        if not wants(webhook, event):
            continue
        body = body or json.dumps(to_structured(event), ensure_ascii=False)
        session.add(
            Delivery(
                webhook_id=webhook.id,
                event_id=event.envelope.id,
                event_type=event.envelope.type,
                body=body,
                next_attempt_at=now,
                created_at=now,
            )
        )
        queued += 1
    return queued


def due(session: Session, limit: int) -> list[tuple[Delivery, Webhook]]:
    statement = (
        select(Delivery, Webhook)
        .join(Webhook, col(Webhook.id) == col(Delivery.webhook_id))
        .where(Delivery.status == "pending", col(Delivery.next_attempt_at) <= datetime.now(UTC))
        .order_by(col(Delivery.id))
        .limit(limit)
    )
    return [(delivery, webhook) for delivery, webhook in session.exec(statement)]


def record_attempt(
    session: Session,
    delivery_id: int,
    status_code: int | None,
    error: str | None,
    max_attempts: int = MAX_ATTEMPTS,
) -> Delivery:
    """Delivered on a 2xx; otherwise retried with exponential backoff, dead after `max_attempts`."""
    row = session.get(Delivery, delivery_id)
    assert row is not None
    now = datetime.now(UTC)
    row.attempts += 1
    row.last_status_code, row.last_error = status_code, error
    if status_code is not None and 200 <= status_code < 300:
        row.status, row.delivered_at = "delivered", now
    elif row.attempts >= max_attempts:
        row.status = "dead"
    else:
        delay = min(FIRST_RETRY_SECONDS * 2 ** (row.attempts - 1), MAX_RETRY_SECONDS)
        row.next_attempt_at = now + timedelta(seconds=delay)
    session.add(row)
    return row


def redrive(session: Session, webhook_id: str, delivery_id: int) -> Delivery | None:
    """Put a dead delivery back in the queue for a fresh round of attempts."""
    row = session.get(Delivery, delivery_id)
    if row is None or row.webhook_id != webhook_id:
        return None
    if row.status == "dead":
        row.status, row.attempts, row.next_attempt_at = "pending", 0, datetime.now(UTC)
        session.add(row)
    return row
