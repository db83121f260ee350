"""Heartbeat storage, the per-centre view, and the anti-entropy state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from ctta.hub.centres.models import CentreHeartbeat, CentreSync, CentreView, SyncView
from ctta.hub.index import service as index
from ctta.hub.index.ingest import IngestState
from ctta.protocol.heartbeat import Heartbeat
from ctta.protocol.registry import FederationRegistry


def record_heartbeat(session: Session, beat: Heartbeat) -> None:
    row = session.get(CentreHeartbeat, beat.centre) or CentreHeartbeat(
        centre=beat.centre, received_at=datetime.now(UTC)
    )
    row.received_at = datetime.now(UTC)
    row.node_url = beat.node_url
    row.outbox_backlog = beat.outbox_backlog
    row.counts = beat.counts
    row.manifest_count = beat.manifest.count if beat.manifest else None
    row.manifest_digest = beat.manifest.digest if beat.manifest else None
    session.add(row)


def is_alive(beat: CentreHeartbeat, now: datetime, heartbeat_timeout: float) -> bool:
    return now - beat.received_at < timedelta(seconds=heartbeat_timeout)


def heartbeats(session: Session) -> dict[str, CentreHeartbeat]:
    return {row.centre: row for row in session.exec(select(CentreHeartbeat))}


def sync_states(session: Session) -> dict[str, CentreSync]:
    return {row.centre: row for row in session.exec(select(CentreSync))}


def centre_views(
    session: Session, registry: FederationRegistry, ingest: IngestState, heartbeat_timeout: float
) -> list[CentreView]:
    beats = heartbeats(session)
    syncs = sync_states(session)
    counts = index.counts_by_centre(session)
    now = datetime.now(UTC)
    views = []
    for centre in registry.centres:
        beat = beats.get(centre.id)
        sync = syncs.get(centre.id)
        views.append(
            CentreView(
                id=centre.id,
                name_zh=centre.name_zh,
                name_en=centre.name_en,
                city=centre.city,
                node_url=centre.node_url or (beat.node_url if beat else None),
                alive=beat is not None and is_alive(beat, now, heartbeat_timeout),
                last_heartbeat_at=beat.received_at if beat else None,
                outbox_backlog=beat.outbox_backlog if beat else None,
                counts=counts.get(centre.id, {}),
                node_counts=beat.counts if beat else None,
                last_event_at=ingest.last_event_at.get(centre.id),
                lag_seconds=ingest.lag_seconds.get(centre.id),
                sync=SyncView.model_validate(sync, from_attributes=True) if sync else None,
            )
        )
    return views
