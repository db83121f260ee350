"""Index writes (version-gated), dead letters and federated search.

Full-text terms live beside the record table in the engine's own full-text structure:
an FTS5 table on SQLite, a GIN-indexed tsvector on PostgreSQL. Both receive the same
pre-computed bilingual terms (see `text.py`), so ranking differs but matching does not.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, text
from sqlmodel import Session, col, select

from ctta.hub.index import text as bilingual
from ctta.hub.index.models import IndexedRecord, SearchHit, SearchPage
from ctta.protocol.envelope import ReceivedEvent
from ctta.protocol.records import RecordMeta
from ctta.protocol.taxonomy import RecordKind, Visibility


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def find(session: Session, centre: str, kind: str, record_id: str) -> IndexedRecord | None:
    statement = select(IndexedRecord).where(
        IndexedRecord.centre == centre,
        IndexedRecord.kind == kind,
        IndexedRecord.record_id == record_id,
    )
    return session.exec(statement).first()


def record_terms(record: RecordMeta) -> str:
    """The text a record is found by: titles, summaries, descriptions, keywords, names."""
    parts: list[str] = [record.title.joined(), record.summary.joined(), " ".join(record.keywords)]
    for extra in ("description", "problem_statement", "applications", "advantages", "name"):
        value = getattr(record, extra, None)
        if value is not None:
            parts.append(value.joined())
    for extra in ("owner_institution", "enterprise"):
        value = getattr(record, extra, None)
        if value:
            parts.append(value)
    return " ".join(bilingual.terms(" ".join(parts)))


def upsert(
    session: Session, event: ReceivedEvent, record: RecordMeta, existing: IndexedRecord | None
) -> None:
    """Store the new state of a record the caller has checked to be newer."""
    row = existing or IndexedRecord(
        centre=record.centre,
        kind=record.kind.value,
        record_id=record.id,
        version=record.version,
        event_id=event.envelope.id,
        event_time=event.envelope.time,
        indexed_at=datetime.now(UTC),
    )
    row.version = record.version
    row.withdrawn = False
    row.status = record.status.value
    row.visibility = record.visibility.value
    row.trl = (
        getattr(record, "trl", None)
        if record.kind == RecordKind.ACHIEVEMENT
        else getattr(record, "min_trl", None)
    )
    row.fields_text = " " + " ".join(f.value for f in record.fields) + " "
    row.data = record.model_dump(mode="json")
    row.event_id = event.envelope.id
    row.event_time = event.envelope.time
    row.indexed_at = datetime.now(UTC)
    session.add(row)
    session.flush()
    _write_terms(session, row.pk, record_terms(record))


def tombstone(
    session: Session,
    event: ReceivedEvent,
    centre: str,
    kind: str,
    record_id: str,
    version: int,
    existing: IndexedRecord | None,
) -> None:
    """Remove a record from search but remember its version."""
    row = existing or IndexedRecord(
        centre=centre,
        kind=kind,
        record_id=record_id,
        version=version,
        event_id=event.envelope.id,
        event_time=event.envelope.time,
        indexed_at=datetime.now(UTC),
    )
    row.version = version
    row.withdrawn = True
    row.data = None
    row.fields_text = ""
    row.event_id = event.envelope.id
    row.event_time = event.envelope.time
    row.indexed_at = datetime.now(UTC)
    session.add(row)
    session.flush()
    _write_terms(session, row.pk, None)


def _write_terms(session: Session, pk: int | None, terms: str | None) -> None:
    if _is_sqlite(session):
        session.execute(text("DELETE FROM record_fts WHERE rowid = :pk"), {"pk": pk})
        if terms:
            session.execute(
                text("INSERT INTO record_fts(rowid, terms) VALUES (:pk, :terms)"),
                {"pk": pk, "terms": terms},
            )
        return
    session.execute(text("DELETE FROM record_terms WHERE pk = :pk"), {"pk": pk})
    if terms:
        session.execute(
            text(
                "INSERT INTO record_terms(pk, terms) "
                "VALUES (:pk, array_to_tsvector(CAST(:terms AS text[])))"
            ),
            {"pk": pk, "terms": sorted(set(terms.split()))},
        )


def _match_query(session: Session, terms: list[str]) -> str:
    if _is_sqlite(session):
        return " AND ".join(f"{t}*" if bilingual.is_single_cjk(t) else f'"{t}"' for t in terms)
    return " & ".join(f"'{t}':*" if bilingual.is_single_cjk(t) else f"'{t}'" for t in terms)


def _matches(session: Session, terms: list[str]) -> dict[int, float]:
    """pk → relevance of every record that contains all the terms."""
    query = _match_query(session, terms)
    if _is_sqlite(session):
        sql = "SELECT rowid, -bm25(record_fts) FROM record_fts WHERE record_fts MATCH :q"
    else:
        sql = (
            "SELECT pk, ts_rank(terms, CAST(:q AS tsquery)) FROM record_terms "
            "WHERE terms @@ CAST(:q AS tsquery)"
        )
    return {pk: float(score) for pk, score in session.execute(text(sql), {"q": query})}


def search(
    session: Session,
    *,
    q: str | None,
    kinds: list[str],
    centres: list[str],
    field: str | None,
    trl_min: int | None,
    trl_max: int | None,
    include_alliance: bool,
    offset: int,
    limit: int,
) -> SearchPage:
    statement = select(
        IndexedRecord.pk,
        IndexedRecord.kind,
        IndexedRecord.centre,
        IndexedRecord.fields_text,
        IndexedRecord.trl,
        IndexedRecord.event_time,
    ).where(col(IndexedRecord.withdrawn).is_(False))
    visible = [Visibility.PUBLIC.value, *([Visibility.ALLIANCE.value] if include_alliance else [])]
    statement = statement.where(col(IndexedRecord.visibility).in_(visible))
    if kinds:
        statement = statement.where(col(IndexedRecord.kind).in_(kinds))
    if centres:
        statement = statement.where(col(IndexedRecord.centre).in_(centres))
    if field:
        statement = statement.where(col(IndexedRecord.fields_text).contains(f" {field} "))
    if trl_min is not None:
        statement = statement.where(col(IndexedRecord.trl) >= trl_min)
    if trl_max is not None:
        statement = statement.where(col(IndexedRecord.trl) <= trl_max)
    terms = bilingual.query_terms(q or "")
    scores: dict[int, float] | None = None
    if terms:
        scores = _matches(session, terms)
        statement = statement.where(col(IndexedRecord.pk).in_(list(scores)) if scores else False)
    rows = list(session.execute(statement))
    if scores is not None:
        rows.sort(key=lambda row: (-scores[row.pk], -row.event_time.timestamp()))
    else:
        rows.sort(key=lambda row: row.event_time, reverse=True)
    facets = {
        "kind": dict(Counter(row.kind for row in rows)),
        "centre": dict(Counter(row.centre for row in rows)),
        "field": dict(Counter(f for row in rows for f in row.fields_text.split())),
        "trl": dict(Counter(str(row.trl) for row in rows if row.trl is not None)),
    }
    page = rows[offset : offset + limit]
    records = {
        r.pk: r
        for r in session.exec(
            select(IndexedRecord).where(col(IndexedRecord.pk).in_([row.pk for row in page]))
        )
    }
    hits = [_hit(records[row.pk], scores.get(row.pk, 0.0) if scores else 0.0) for row in page]
    next_offset = offset + limit if offset + limit < len(rows) else None
    return SearchPage(total=len(rows), hits=hits, facets=facets, next_offset=next_offset)


def _hit(row: IndexedRecord, score: float) -> SearchHit:
    data: dict[str, Any] = row.data or {}
    return SearchHit(
        kind=row.kind,
        centre=row.centre,
        id=row.record_id,
        version=row.version,
        score=round(score, 4),
        title=data.get("title", {}),
        summary=data.get("summary", {}),
        fields=data.get("fields", []),
        trl=row.trl,
        visibility=row.visibility,
        updated_at=data.get("updated_at"),
    )


def live_entries(session: Session, centre: str) -> list[tuple[str, str, int]]:
    """(kind, id, version) of a centre's records in the index: compare with its manifest."""
    statement = select(IndexedRecord.kind, IndexedRecord.record_id, IndexedRecord.version).where(
        IndexedRecord.centre == centre, col(IndexedRecord.withdrawn).is_(False)
    )
    return [tuple(row) for row in session.exec(statement)]


def counts_by_centre(session: Session) -> dict[str, dict[str, int]]:
    statement = (
        select(IndexedRecord.centre, IndexedRecord.kind, func.count())
        .where(col(IndexedRecord.withdrawn).is_(False))
        .group_by(IndexedRecord.centre, IndexedRecord.kind)
    )
    result: dict[str, dict[str, int]] = {}
    for centre, kind, count in session.exec(statement):
        result.setdefault(centre, {})[kind] = count
    return result


def clear(session: Session) -> None:
    """Empty the index (not the dead letters) before a rebuild."""
    if _is_sqlite(session):
        session.execute(text("DELETE FROM record_fts"))
    else:
        session.execute(text("DELETE FROM record_terms"))
    session.execute(delete(IndexedRecord))
