"""Record queries and row writes; callers own the session and the transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from ctta.node.pages import newest_first
from ctta.node.records.models import ListFilters, Record
from ctta.protocol.records import RecordContent
from ctta.protocol.taxonomy import RecordKind, RecordStatus, Visibility
from ctta.server.auth import Principal, Role

MAX_PAGE = 200


def visible_to(caller: Principal | None) -> frozenset[Visibility]:
    """Public records are open, alliance records need any token, private ones staff."""
    if caller is None:
        return frozenset({Visibility.PUBLIC})
    if caller.role.includes(Role.STAFF):
        return frozenset(Visibility)
    return frozenset({Visibility.PUBLIC, Visibility.ALLIANCE})


def get(session: Session, kind: RecordKind, record_id: str) -> Record | None:
    record = session.get(Record, record_id)
    return record if record is not None and record.kind == kind.value else None


def list_page(
    session: Session,
    kind: RecordKind,
    filters: ListFilters,
    *,
    cursor: str | None,
    limit: int,
    visible: frozenset[Visibility],
) -> tuple[list[Record], str | None]:
    """Newest first, among the visibilities the caller may see."""
    statement = select(Record).where(
        Record.kind == kind.value, col(Record.visibility).in_([v.value for v in visible])
    )
    if filters.visibility:
        statement = statement.where(Record.visibility == filters.visibility)
    if filters.status:
        statement = statement.where(Record.status == filters.status)
    else:
        statement = statement.where(Record.status != RecordStatus.WITHDRAWN.value)
    if filters.field:
        statement = statement.where(col(Record.fields_text).contains(f" {filters.field} "))
    if filters.trl_min is not None:
        statement = statement.where(col(Record.trl) >= filters.trl_min)
    if filters.trl_max is not None:
        statement = statement.where(col(Record.trl) <= filters.trl_max)
    if filters.q:
        terms = filters.q.lower().split()
        statement = statement.where(
            *(col(Record.search_text).contains(term, autoescape=True) for term in terms)
        )
    return newest_first(session, statement, Record.id, cursor=cursor, limit=limit)


def denormalised_columns(kind: RecordKind, content: RecordContent) -> dict[str, Any]:
    """The filter columns derived from a record's content."""
    trl = (
        getattr(content, "trl", None)
        if kind == RecordKind.ACHIEVEMENT
        else getattr(content, "min_trl", None)
    )
    texts = [content.title.joined(), content.summary.joined(), " ".join(content.keywords)]
    if content.description is not None:
        texts.append(content.description.joined())
    return {
        "trl": trl,
        "fields_text": " " + " ".join(field.value for field in content.fields) + " ",
        "search_text": " ".join(texts).lower(),
    }


def compare_and_set(
    session: Session, record_id: str, expected_version: int, values: dict[str, Any]
) -> bool:
    """Apply `values` only if the stored version is still `expected_version`.

    One conditional UPDATE, so two concurrent writers cannot both win on PostgreSQL either.
    """
    result = session.execute(
        update(Record)
        .where(col(Record.id) == record_id, col(Record.version) == expected_version)
        .values(**values)
    )
    return result.rowcount == 1


def _published() -> tuple:
    """Conditions of a record the federation should hold."""
    return (
        Record.visibility != Visibility.PRIVATE.value,
        Record.status != RecordStatus.WITHDRAWN.value,
    )


def manifest_rows(session: Session) -> list[tuple[str, str, int]]:
    """(kind, id, version) of every record the federation should hold."""
    statement = (
        select(Record.kind, Record.id, Record.version)
        .where(*_published())
        .order_by(col(Record.kind), col(Record.id))
    )
    return [tuple(row) for row in session.exec(statement)]


def published_counts(session: Session) -> dict[str, int]:
    statement = select(Record.kind, func.count()).where(*_published()).group_by(Record.kind)
    return {row[0]: row[1] for row in session.execute(statement)}
