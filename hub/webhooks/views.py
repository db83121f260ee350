"""`/webhooks`: register endpoints, read the delivery log, re-drive dead deliveries."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from sqlmodel import col, select
from ulid import ULID

from ctta.hub.deps import Cursor, ReaderOnly, SessionDep, invalid
from ctta.hub.webhooks import service
from ctta.hub.webhooks.models import (
    Delivery,
    DeliveryRead,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    as_read,
)
from ctta.protocol.records import RecordId
from ctta.server.db import MAX_ROW_ID, write_gate

MAX_URL = col(Webhook.url).type.length  # PostgreSQL refuses a longer one with an error

router = APIRouter(prefix="/webhooks", tags=["webhooks"], dependencies=[ReaderOnly])


def _load(session: SessionDep, webhook_id: str) -> Webhook:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook {webhook_id}")
    return webhook


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    summary="Register an endpoint",
)
def create(body: WebhookCreate, session: SessionDep, request: Request) -> WebhookCreated:
    if body.url.scheme != "https" and not request.app.state.settings.webhook_allow_http:
        raise invalid("url", "webhook URLs must use https")
    if len(str(body.url)) > MAX_URL:
        raise invalid("url", f"the URL is longer than {MAX_URL} characters")
    webhook = Webhook(
        id=str(ULID()),
        url=str(body.url),
        secret=secrets.token_urlsafe(32),
        event_types=body.event_types,
        centres=body.centres,
        created_at=datetime.now(UTC),
    )
    with write_gate(session.get_bind()):
        session.add(webhook)
        session.commit()
    return WebhookCreated(**as_read(webhook, secret=webhook.secret))


@router.get("", response_model=list[WebhookRead], summary="Registered endpoints")
def list_webhooks(session: SessionDep) -> list[WebhookRead]:
    return [
        WebhookRead(**as_read(row))
        for row in session.exec(select(Webhook).order_by(col(Webhook.id)))
    ]


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Stop deliveries to an endpoint",
)
def deactivate(webhook_id: RecordId, session: SessionDep) -> None:
    webhook = _load(session, webhook_id)
    webhook.active = False
    with write_gate(session.get_bind()):
        session.add(webhook)
        session.commit()


@router.get(
    "/{webhook_id}/deliveries",
    response_model=list[DeliveryRead],
    summary="Delivery log, newest first",
)
def deliveries(
    webhook_id: RecordId,
    session: SessionDep,
    status_: Annotated[
        str | None, Query(alias="status", pattern="^(pending|delivered|dead)$")
    ] = None,
    before_id: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[DeliveryRead]:
    _load(session, webhook_id)
    statement = (
        select(Delivery)
        .where(Delivery.webhook_id == webhook_id)
        .order_by(col(Delivery.id).desc())
        .limit(limit)
    )
    if status_:
        statement = statement.where(Delivery.status == status_)
    if before_id:
        statement = statement.where(col(Delivery.id) < before_id)
    return [DeliveryRead.of(row) for row in session.exec(statement)]


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redrive",
    response_model=DeliveryRead,
    summary="Queue a dead delivery again",
)
def redrive(
    webhook_id: RecordId,
    delivery_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
    session: SessionDep,
) -> DeliveryRead:
    with write_gate(session.get_bind()):
        row = service.redrive(session, webhook_id, delivery_id)
        if row is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no delivery {delivery_id} of webhook {webhook_id}"
            )
        session.commit()
    return DeliveryRead.of(row)
