"""The token table (hashes only) and the API models of token management."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import Column
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from ctta.server.auth import Role
from ctta.server.db import UtcDateTime


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    id: str = SQLField(primary_key=True, max_length=26)
    label: str = SQLField(max_length=100)
    role: str = SQLField(max_length=16)
    token_sha256: str = SQLField(max_length=64, unique=True, description="Never the token")
    created_at: datetime = SQLField(sa_column=Column(UtcDateTime(), nullable=False))
    created_by: str = SQLField(max_length=100)
    revoked_at: datetime | None = SQLField(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )


class TokenCreate(BaseModel):
    label: str = Field(min_length=1, max_length=100, description="Whose token, what for")
    role: Role


class TokenRead(BaseModel):
    id: str
    label: str
    role: Role
    created_at: datetime
    created_by: str = Field(description="Token id, or settings-token label, of the issuer")
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str = Field(description="The bearer token; shown this once, only its hash is kept")


class TokenPage(BaseModel):
    items: list[TokenRead]
    next_cursor: str | None = None
