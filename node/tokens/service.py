"""Issuing, finding and revoking stored tokens; callers own the session and the commit."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlmodel import Session, col, select
from ulid import ULID

from ctta.node.audit import service as audit
from ctta.node.audit.models import AuditAction
from ctta.node.pages import newest_first
from ctta.node.tokens.models import ApiToken
from ctta.server.auth import Principal, Role, hash_token

TOKEN_PREFIX = "ctta_"  # recognisable, so secret scanners and people can spot a leaked one
AUDIT_KIND = "token"


def issue_token(
    session: Session, role: Role, label: str, *, issued_by: Principal | None = None
) -> tuple[ApiToken, str]:
    """Store a new token's hash and return the row and the token, which is never stored.

    `issued_by` is None when an operator issues it from the command line.
    """
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    issuer = issued_by or Principal(role=Role.ADMIN, label="command line")
    row = ApiToken(
        id=str(ULID()),
        label=label,
        role=role.value,
        token_sha256=hash_token(token),
        created_at=datetime.now(UTC),
        created_by=issuer.ref,
    )
    session.add(row)
    audit.note(session, issuer, AuditAction.CREATE, AUDIT_KIND, row.id)
    return row, token


def principal_for(session: Session, digest: str) -> Principal | None:
    """The caller a token hash stands for, if it names a token that is not revoked."""
    row = session.exec(
        select(ApiToken).where(ApiToken.token_sha256 == digest, col(ApiToken.revoked_at).is_(None))
    ).first()
    return None if row is None else Principal(role=Role(row.role), label=row.label, token_id=row.id)


def revoke(session: Session, row: ApiToken, by: Principal) -> ApiToken:
    row.revoked_at = datetime.now(UTC)
    session.add(row)
    audit.note(session, by, AuditAction.REVOKE, AUDIT_KIND, row.id)
    return row


def list_page(
    session: Session, *, include_revoked: bool, cursor: str | None, limit: int
) -> tuple[list[ApiToken], str | None]:
    statement = select(ApiToken)
    if not include_revoked:
        statement = statement.where(col(ApiToken.revoked_at).is_(None))
    return newest_first(session, statement, ApiToken.id, cursor=cursor, limit=limit)
