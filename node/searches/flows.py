"""Saving and withdrawing a search: the row and its event in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session
from ulid import ULID

from ctta.node.audit import service as audit
from ctta.node.audit.models import AuditAction
from ctta.node.publisher import Publisher
from ctta.node.searches.models import SavedSearchRow
from ctta.protocol.searches import (
    SEARCH_UPSERTED,
    SEARCH_WITHDRAWN,
    SavedSearch,
    SearchQuery,
    SearchWithdrawn,
)
from ctta.protocol.subjects import SEARCH_KIND, search_subject
from ctta.server.auth import Principal


def save(
    session: Session, publisher: Publisher, query: SearchQuery, actor: Principal
) -> SavedSearchRow:
    now = datetime.now(UTC)
    row = SavedSearchRow(
        id=str(ULID()),
        version=1,
        query=query.model_dump(mode="json"),
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    published = SavedSearch(
        **query.model_dump(), id=row.id, centre=publisher.centre, version=1, updated_at=now
    )
    _publish(session, publisher, row, SEARCH_UPSERTED, published.model_dump(mode="json"), "search")
    audit.note(session, actor, AuditAction.CREATE, SEARCH_KIND, row.id, row.version)
    return row


def withdraw(
    session: Session, publisher: Publisher, row: SavedSearchRow, actor: Principal
) -> SavedSearchRow:
    row.version += 1
    row.status = "withdrawn"
    row.updated_at = datetime.now(UTC)
    session.add(row)
    gone = SearchWithdrawn(id=row.id, centre=publisher.centre, version=row.version)
    _publish(
        session, publisher, row, SEARCH_WITHDRAWN, gone.model_dump(mode="json"), "search-withdrawn"
    )
    audit.note(session, actor, AuditAction.WITHDRAW, SEARCH_KIND, row.id, row.version)
    return row


def _publish(
    session: Session,
    publisher: Publisher,
    row: SavedSearchRow,
    event_type: str,
    data: dict,
    schema: str,
) -> None:
    publisher.enqueue(
        session,
        subject=search_subject(publisher.centre, row.id),
        kind=SEARCH_KIND,
        entity_id=row.id,
        version=row.version,
        event_type=event_type,
        data=data,
        schema=schema,
        time=row.updated_at,
    )
