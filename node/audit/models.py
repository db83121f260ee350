"""The audit table and its API models. Entries name what changed, never its content."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field
from sqlalchemy import Column
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from ctta.server.auth import Role
from ctta.server.db import UtcDateTime


class AuditAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    WITHDRAW = "withdraw"
    RESPOND = "respond"
    REVOKE = "revoke"


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"

    id: str = SQLField(primary_key=True, max_length=26, description="ULID: sorts by time")
    at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    actor_token_id: str | None = SQLField(default=None, max_length=26, index=True)
    actor_label: str = SQLField(max_length=100)
    actor_role: str = SQLField(max_length=16)
    action: str = SQLField(max_length=16)
    kind: str = SQLField(max_length=16)
    entity_id: str = SQLField(max_length=32, index=True)
    version: int | None = None


class AuditRead(BaseModel):
    id: str
    at: datetime
    actor_token_id: str | None = Field(description="None for a token from the settings")
    actor_label: str
    actor_role: Role
    action: AuditAction
    kind: str = Field(description="Record kind, or `response` (to a match), `search`, `token`")
    entity_id: str
    version: int | None = Field(description="Version (or match step) the change produced")


class AuditPage(BaseModel):
    items: list[AuditRead]
    next_cursor: str | None = None
