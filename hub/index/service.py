"""Index writes (version-gated) and federated search.

Full-text terms live beside the record table in the engine's own full-text structure:
an FTS5 table on SQLite, a GIN-indexed tsvector on PostgreSQL. Both receive the same
pre-computed bilingual terms (see `text.py`), so ranking differs but matching does not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, text, tuple_, update
from sqlmodel import Session, col, select

from ctta.hub.index import text as bilingual
from ctta.hub.index.models import IndexedRecord, SearchHit, SearchPage
from ctta.protocol.envelope import ReceivedEvent
from ctta.protocol.records import RecordMeta
from ctta.protocol.taxonomy import RecordKind, Visibility
from ctta.server.db import is_sqlite


def _is_sqlite(session: Session) -> bool:
    return is_sqlite(session.get_bind())


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


@dataclass
class IndexedState:
    """What the version gate needs to know of a stored record."""

    pk: int | None
    version: int
    event_id: str


class IndexWriter:
    """Applies one batch of events to the index with a handful of statements.

    The rows a batch touches are read with one query; changes collect in memory and are
    written at the end with one executemany per kind of statement, in SQLAlchemy Core:
    per-event ORM objects, queries and flushes were three quarters of the ingest time.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._known: dict[tuple[str, str, str], IndexedState | None] = {}
        self._changes: dict[tuple[str, str, str], tuple[dict[str, Any], str | None]] = {}

    def prefetch(self, keys: list[tuple[str, str, str]]) -> None:
        wanted = [key for key in dict.fromkeys(keys) if key not in self._known]
        if not wanted:
            return
        table = IndexedRecord.__table__.c
        statement = select(
            table.pk, table.centre, table.kind, table.record_id, table.version, table.event_id
        )
        statement = statement.where(tuple_(table.centre, table.kind, table.record_id).in_(wanted))
        for pk, centre, kind, record_id, version, event_id in self.session.execute(statement):
            self._known[(centre, kind, record_id)] = IndexedState(pk, version, event_id)
        for key in wanted:
            self._known.setdefault(key, None)

    def find(self, centre: str, kind: str, record_id: str) -> IndexedState | None:
        key = (centre, kind, record_id)
        if key not in self._known:
            self.prefetch([key])
        return self._known[key]

    def upsert(
        self, event: ReceivedEvent, record: RecordMeta, data: dict[str, Any], terms: str
    ) -> None:
        """Store the new state of a record the caller has checked to be newer.

        `data` is the record as validated and normalised, not the raw event body: lax input
        such as a TRL sent as "5" must not reach search or matching as a string.
        """
        trl_field = "trl" if record.kind == RecordKind.ACHIEVEMENT else "min_trl"
        values = {
            "withdrawn": False,
            "status": record.status.value,
            "visibility": record.visibility.value,
            "trl": getattr(record, trl_field, None),
            "fields_text": " " + " ".join(f.value for f in record.fields) + " ",
            "data": data,
        }
        self._change(
            event,
            (record.centre, record.kind.value, record.id),
            record.version,
            values,
            terms,
        )

    def tombstone(
        self, event: ReceivedEvent, centre: str, kind: str, record_id: str, version: int
    ) -> None:
        """Remove a record from search but remember its version."""
        values = {"withdrawn": True, "status": "withdrawn", "data": None, "fields_text": ""}
        self._change(event, (centre, kind, record_id), version, values, None)

    def _change(
        self,
        event: ReceivedEvent,
        key: tuple[str, str, str],
        version: int,
        values: dict[str, Any],
        terms: str | None,
    ) -> None:
        known = self._known.get(key)
        self._known[key] = IndexedState(known.pk if known else None, version, event.envelope.id)
        full = {
            "visibility": "",
            "trl": None,
            **values,
            "centre": key[0],
            "kind": key[1],
            "record_id": key[2],
            "version": version,
            "event_id": event.envelope.id,
            "event_time": event.envelope.time,
            "indexed_at": datetime.now(UTC),
        }
        self._changes[key] = (full, terms)

    def finish(self) -> None:
        """Write the batch's rows, then rewrite the search terms of every row it changed."""
        if not self._changes:
            return
        table = IndexedRecord.__table__
        new = [(key, row) for key, (row, _) in self._changes.items() if self._known[key].pk is None]
        old = [
            {**row, "row_pk": self._known[key].pk}
            for key, (row, _) in self._changes.items()
            if self._known[key].pk is not None
        ]
        if new:
            inserted = self.session.execute(
                insert(table).returning(table.c.pk, sort_by_parameter_order=True),
                [row for _, row in new],
            )
            for (key, _), pk in zip(new, inserted.scalars(), strict=True):
                self._known[key].pk = pk
        if old:
            self.session.execute(update(table).where(table.c.pk == bindparam("row_pk")), old)
        pks = [{"pk": self._known[key].pk} for key in self._changes]
        added = [
            {"pk": self._known[key].pk, "terms": terms}
            for key, (_, terms) in self._changes.items()
            if terms
        ]
        self._changes.clear()
        if _is_sqlite(self.session):
            self.session.execute(text("DELETE FROM record_fts WHERE rowid = :pk"), pks)
            if added:
                self.session.execute(
                    text("INSERT INTO record_fts(rowid, terms) VALUES (:pk, :terms)"), added
                )
            return
        self.session.execute(text("DELETE FROM record_terms WHERE pk = :pk"), pks)
        if added:
            self.session.execute(
                text(
                    "INSERT INTO record_terms(pk, terms) "
                    "VALUES (:pk, array_to_tsvector(CAST(:terms AS text[])))"
                ),
                [{"pk": row["pk"], "terms": sorted(set(row["terms"].split()))} for row in added],
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
