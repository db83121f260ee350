"""The record table and the API models built from the protocol's content models.

One table holds all four kinds: they share identity, versioning, visibility and the
outbox, and the kind-specific content is stored as the validated JSON of its protocol
model. The few columns that filters need (status, fields, TRL, text) are denormalised.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, create_model
from sqlalchemy import JSON, Column, Index, Text
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from ctta.protocol.records import CONTENT_MODELS, PUBLISHED_MODELS, PrivateDetail, Version
from ctta.protocol.taxonomy import RecordKind, RecordStatus
from ctta.server.db import UtcDateTime


class Record(SQLModel, table=True):
    __tablename__ = "record"
    __table_args__ = (Index("ix_record_kind_id", "kind", "id"),)

    id: str = SQLField(primary_key=True, max_length=26)
    kind: str = SQLField(max_length=16)
    centre: str = SQLField(max_length=32)
    version: int
    status: str = SQLField(max_length=16, index=True)
    visibility: str = SQLField(max_length=16)
    created_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    trl: int | None = SQLField(
        default=None, description="TRL of an achievement, minimum TRL of a demand"
    )
    fields_text: str = SQLField(default="", sa_column=Column(Text, nullable=False))
    search_text: str = SQLField(default="", sa_column=Column(Text, nullable=False))
    content: dict[str, Any] = SQLField(sa_column=Column(JSON, nullable=False))
    private: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSON, nullable=True))


def _api_models(kind: RecordKind) -> tuple[type[BaseModel], type[BaseModel], type[BaseModel]]:
    """(Create, Update, Read) models of one kind, derived so they never drift from the protocol."""
    content = CONTENT_MODELS[kind]
    published = PUBLISHED_MODELS[kind]
    name = kind.value.capitalize()
    create = create_model(
        f"{name}Create",
        __base__=content,
        private=(PrivateDetail | None, Field(default=None, description="Never leaves this node")),
    )
    update = create_model(
        f"{name}Update",
        __base__=create,
        version=(Version, Field(description="The version you read; a stale one gets 409")),
    )
    read = create_model(
        f"{name}Read",
        __base__=published,
        status=(RecordStatus, Field(description="`withdrawn` once withdrawn")),
        private=(PrivateDetail | None, Field(default=None, description="Shown to staff only")),
    )
    return create, update, read


API_MODELS: dict[RecordKind, tuple[type[BaseModel], type[BaseModel], type[BaseModel]]] = {
    kind: _api_models(kind) for kind in RecordKind
}


class ListFilters(BaseModel):
    status: str | None = None
    visibility: str | None = None
    field: str | None = None
    trl_min: int | None = Field(default=None, ge=1, le=9)
    trl_max: int | None = Field(default=None, ge=1, le=9)
    q: str | None = Field(default=None, max_length=200)
