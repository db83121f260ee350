"""Applying saved-search events, and turning a newly indexed record into alerts.

Alerts are written to the hub's outbox in the same transaction as the record they are
about, so a crash cannot lose one; their ids are deterministic, so a replay cannot
repeat one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, col, select

from ctta.hub.alerts.models import StandingQuery
from ctta.hub.index.text import query_terms
from ctta.protocol.envelope import ReceivedEvent, first_error, hub_message
from ctta.protocol.records import RecordRef
from ctta.protocol.searches import (
    ALERT_TYPE,
    SEARCH_UPSERTED,
    SEARCH_WITHDRAWN,
    SavedSearch,
    SearchAlert,
    SearchQuery,
    SearchWithdrawn,
    alert_id,
)
from ctta.protocol.subjects import SEARCH_KIND, alert_subject
from ctta.server.outbox import service as outbox


def apply_search_event(session: Session, event: ReceivedEvent) -> str | None:
    """Store or withdraw a saved search; returns the reason when the event must be refused."""
    envelope = event.envelope
    model = {SEARCH_UPSERTED: SavedSearch, SEARCH_WITHDRAWN: SearchWithdrawn}.get(envelope.type)
    if model is None:
        return f"type {envelope.type!r} does not fit a search subject"
    try:
        search = model.model_validate(event.data)
    except ValidationError as exc:
        return f"data does not match the search schema: {first_error(exc)}"
    if (search.centre, search.version, f"{SEARCH_KIND}/{search.id}") != (
        envelope.centre,
        envelope.version,
        envelope.subject,
    ):
        return "search centre, version or id differ from the envelope"
    row = session.get(StandingQuery, search.id)
    if row is not None and (row.centre != search.centre or row.version >= search.version):
        return f"stale or foreign saved search {search.id}"
    row = row or StandingQuery(id=search.id, centre=search.centre, version=search.version, query={})
    row.version = search.version
    row.active = isinstance(search, SavedSearch)
    if isinstance(search, SavedSearch):
        row.query = SearchQuery.model_validate(
            search.model_dump(include=set(SearchQuery.model_fields))
        ).model_dump(mode="json")
    session.add(row)
    return None


def active(session: Session) -> list[StandingQuery]:
    return list(session.exec(select(StandingQuery).where(col(StandingQuery.active).is_(True))))


def fits(query: dict[str, Any], kind: str, data: dict[str, Any], terms: set[str]) -> bool:
    """Every given part of the query holds for the record."""
    if query.get("kinds") and kind not in query["kinds"]:
        return False
    if query.get("fields") and not set(query["fields"]) & set(data.get("fields", [])):
        return False
    trl = data.get("trl") if kind == "achievement" else data.get("min_trl")
    if query.get("trl_min") is not None and (trl is None or trl < query["trl_min"]):
        return False
    wanted = query_terms(query.get("q", ""))
    return bool(wanted or query.get("kinds") or query.get("fields")) and set(wanted) <= terms


def enqueue_alerts(
    session: Session, searches: list[StandingQuery], data: dict[str, Any], terms: set[str]
) -> int:
    """Queue an alert to every centre whose saved search the new record fits."""
    record = RecordRef(centre=data["centre"], id=data["id"])
    queued = 0
    for search in searches:
        if not fits(search.query, data["kind"], data, terms):
            continue
        identifier = alert_id(search.id, record, data["version"])
        alert = SearchAlert(
            alert_id=identifier,
            search_id=search.id,
            record=record,
            kind=data["kind"],
            version=data["version"],
            title=data.get("title", {}),
            published_at=datetime.now(UTC),
        )
        message = hub_message(
            nats_subject=alert_subject(search.centre, identifier),
            event_type=ALERT_TYPE,
            ce_subject=f"alert/{identifier}",
            sequence=1,
            msg_id=identifier,
            body=alert.model_dump_json().encode(),
        )
        outbox.enqueue(session, message, kind="alert", record_id=identifier[:26], version=1)
        queued += 1
    return queued
