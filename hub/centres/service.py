"""Heartbeat storage and the per-centre view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from ctta.hub.centres.models import CentreHeartbeat, CentreView
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
    session.add(row)


def centre_views(
    session: Session, registry: FederationRegistry, ingest: IngestState, heartbeat_timeout: float
) -> list[CentreView]:
    beats = {row.centre: row for row in session.exec(select(CentreHeartbeat))}
    counts = index.counts_by_centre(session)
    now = datetime.now(UTC)
    views = []
    for centre in registry.centres:
        beat = beats.get(centre.id)
        received = beat.received_at.replace(tzinfo=beat.received_at.tzinfo or UTC) if beat else None
        views.append(
            CentreView(
                id=centre.id,
                name_zh=centre.name_zh,
                name_en=centre.name_en,
                city=centre.city,
                node_url=centre.node_url or (beat.node_url if beat else None),
                alive=received is not None
                and now - received < timedelta(seconds=heartbeat_timeout),
                last_heartbeat_at=received,
                outbox_backlog=beat.outbox_backlog if beat else None,
                counts=counts.get(centre.id, {}),
                node_counts=beat.counts if beat else None,
                last_event_at=ingest.last_event_at.get(centre.id),
                lag_seconds=ingest.lag_seconds.get(centre.id),
            )
        )
    return views
