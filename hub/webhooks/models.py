"""Webhook subscriptions, their deliveries, and the API models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, HttpUrl
from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from ctta.server.db import UtcDateTime


class Webhook(SQLModel, table=True):
    __tablename__ = "webhook"

    id: str = SQLField(primary_key=True, max_length=26)
    url: str = SQLField(max_length=2000)
    secret: str = SQLField(max_length=200, description="Shared HMAC key; shown once at creation")
    event_types: list[str] = SQLField(sa_column=Column(JSON, nullable=False))
    centres: list[str] = SQLField(sa_column=Column(JSON, nullable=False))
    active: bool = True
    created_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))


class Delivery(SQLModel, table=True):
    """One event for one webhook; the unique pair makes a replayed event deliver once."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id", name="uq_delivery_event"),
        Index("ix_delivery_due", "status", "next_attempt_at"),
    )

    id: int | None = SQLField(default=None, primary_key=True)
    webhook_id: str = SQLField(max_length=26, index=True)
    event_id: str = SQLField(max_length=26)
    event_type: str = SQLField(max_length=100)
    body: str = SQLField(sa_column=Column(Text, nullable=False))
    status: str = SQLField(
        default="pending", max_length=16, description="pending, delivered or dead"
    )
    attempts: int = 0
    next_attempt_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    delivered_at: datetime | None = SQLField(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )


class WebhookCreate(BaseModel):
    url: HttpUrl = Field(
        description="HTTPS endpoint that receives POSTed CloudEvents (structured JSON)"
    )
    event_types: list[str] = Field(
        default_factory=list,
        description="CloudEvents types to deliver, e.g. org.ctta.demand.upserted.v1; empty = all",
        max_length=50,
    )
    centres: list[str] = Field(
        default_factory=list, description="Only these centres; empty = all", max_length=11
    )


class WebhookRead(BaseModel):
    id: str
    url: str
    event_types: list[str]
    centres: list[str]
    active: bool
    created_at: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(description="HMAC-SHA256 key of the X-CTTA-Signature header; store it now")


class DeliveryRead(BaseModel):
    id: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, row: Delivery) -> DeliveryRead:
        return cls.model_validate(row, from_attributes=True)


def as_read(row: Webhook, **extra: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "event_types": row.event_types,
        "centres": row.centres,
        "active": row.active,
        "created_at": row.created_at,
        **extra,
    }
