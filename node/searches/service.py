"""Storing alerts routed to this centre."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session

from ctta.node.searches.models import AlertRow, SavedSearchRow
from ctta.protocol.searches import SearchAlert


def store_alert(session: Session, alert: SearchAlert) -> str | None:
    """Keep an alert once; returns why it cannot be kept (not one of our searches)."""
    if session.get(SavedSearchRow, alert.search_id) is None:
        return (
            f"alert {alert.alert_id} is for search {alert.search_id}, which this centre never saved"
        )
    if session.get(AlertRow, alert.alert_id) is None:
        session.add(
            AlertRow(
                id=alert.alert_id,
                search_id=alert.search_id,
                record_centre=alert.record.centre,
                record_id=alert.record.id,
                kind=alert.kind.value,
                version=alert.version,
                title=alert.title,
                received_at=datetime.now(UTC),
            )
        )
    return None
