"""Manifest, heartbeat and the record states a resync re-publishes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from ctta.node.federation.models import Manifest, ManifestEntry
from ctta.node.records import service as records
from ctta.node.records.models import Record
from ctta.protocol.heartbeat import Heartbeat
from ctta.protocol.manifest import ManifestSummary, bucket_of, manifest_digest, summary
from ctta.server.outbox import service as outbox
from ctta.server.outbox.models import OutboxEvent

# Ids per locking statement: far below the 65,535 parameters PostgreSQL accepts.
LOCK_CHUNK = 1000


def manifest(session: Session, centre: str, *, include_records: bool) -> Manifest:
    rows = records.manifest_rows(session)
    return Manifest(
        centre=centre,
        count=len(rows),
        digest=manifest_digest(rows),
        records=[ManifestEntry(kind=k, id=i, version=v) for k, i, v in rows]
        if include_records
        else None,
    )


def published_counts(session: Session) -> dict[str, int]:
    """Counted in SQL: heartbeats run every few seconds, manifests rarely."""
    return records.published_counts(session)


@dataclass
class PublishedState:
    """Counts and manifest summary, kept with the outbox position they were read at.

    Every change to what a node publishes adds an outbox row, so while the newest row is
    the same the published set is too, and a heartbeat every few seconds need not read
    every record again.
    """

    position: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    manifest: ManifestSummary | None = None

    def refresh(self, session: Session) -> None:
        position = outbox.last_seq(session)
        if self.manifest is None or position != self.position:
            self.counts = published_counts(session)
            self.manifest = summary(records.manifest_rows(session))
            self.position = position


def heartbeat(
    session: Session, centre: str, node_url: str | None, state: PublishedState
) -> Heartbeat:
    """Liveness, backlog, counts and the manifest summary the hub's anti-entropy compares."""
    state.refresh(session)
    return Heartbeat(
        centre=centre,
        node_url=node_url,
        sent_at=datetime.now(UTC),
        outbox_backlog=outbox.backlog(session),
        counts=state.counts,
        manifest=state.manifest,
    )


def records_in_buckets(session: Session, wanted: set[str]) -> list[Record]:
    """Every record of the given buckets that the federation may know of, locked for update.

    That is every record with an outbox row: published ones, and unpublished ones that were
    published once, whose tombstone may be what the hub missed. A record never published
    stays unknown. The lock (PostgreSQL) keeps a concurrent write from slipping a newer
    version into the outbox ahead of the older one re-published here.
    """
    known = select(Record.kind, Record.id).where(col(Record.id).in_(select(OutboxEvent.record_id)))
    ids = [
        record_id for kind, record_id in session.exec(known) if bucket_of(kind, record_id) in wanted
    ]
    locked: list[Record] = []
    for start in range(0, len(ids), LOCK_CHUNK):  # bound the parameters of one statement
        chunk = ids[start : start + LOCK_CHUNK]
        statement = select(Record).where(col(Record.id).in_(chunk)).order_by(col(Record.id))
        locked += session.exec(statement.with_for_update())
    return locked
