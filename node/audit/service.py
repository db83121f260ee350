"""Writing and reading audit entries; the caller's transaction holds the change and its entry."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, select
from ulid import ULID

from ctta.node.audit.models import AuditAction, AuditEntry
from ctta.node.pages import newest_first
from ctta.server.auth import Principal


def note(
    session: Session,
    actor: Principal,
    action: AuditAction,
    kind: str,
    entity_id: str,
    version: int | None = None,
) -> None:
    """Add an entry to the caller's transaction, so it commits or rolls back with the change."""
    session.add(
        AuditEntry(
            id=str(ULID()),
            at=datetime.now(UTC),
            actor_token_id=actor.token_id,
            actor_label=actor.label,
            actor_role=actor.role.value,
            action=action.value,
            kind=kind,
            entity_id=entity_id,
            version=version,
        )
    )


def list_page(
    session: Session,
    *,
    action: AuditAction | None,
    kind: str | None,
    entity_id: str | None,
    actor_token_id: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[AuditEntry], str | None]:
    statement = select(AuditEntry)
    if action is not None:
        statement = statement.where(AuditEntry.action == action.value)
    if kind is not None:
        statement = statement.where(AuditEntry.kind == kind)
    if entity_id is not None:
        statement = statement.where(AuditEntry.entity_id == entity_id)
    if actor_token_id is not None:
        statement = statement.where(AuditEntry.actor_token_id == actor_token_id)
    return newest_first(session, statement, AuditEntry.id, cursor=cursor, limit=limit)
