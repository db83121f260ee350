"""Answering the hub's resync request: re-publish what differs, through the outbox."""

from __future__ import annotations

import logging

from sqlmodel import Session

from ctta.node.federation import service
from ctta.node.publisher import EventTooLarge, Publisher
from ctta.node.records import flows as record_flows
from ctta.node.records import service as records
from ctta.protocol.manifest import buckets, differing_buckets
from ctta.protocol.resync import ResyncRequest
from ctta.protocol.taxonomy import RecordStatus, Visibility

log = logging.getLogger(__name__)


def resync(session: Session, publisher: Publisher, request: ResyncRequest) -> int:
    """Queue the current state of every record in the buckets where the hub differs.

    Published records go out as upserts of their current version, withdrawn or now-private
    ones as their tombstone, each as a new event (new id), so the stream stores it even if
    the original is still within the duplicate window. Returns how many were queued.
    """
    rows = records.manifest_rows(session)
    wanted = differing_buckets(buckets(rows), request.buckets)
    if not wanted:
        return 0
    queued = 0
    for record in service.records_in_buckets(session, wanted):
        # Decided on the locked row, not on `rows`, which may be older.
        if record.status == RecordStatus.WITHDRAWN.value:
            record_flows.enqueue_tombstone(session, publisher, record, "withdrawn")
        elif record.visibility == Visibility.PRIVATE.value:
            record_flows.enqueue_tombstone(session, publisher, record, "private")
        else:
            try:
                record_flows.enqueue_upsert(session, publisher, record)
            except EventTooLarge as exc:  # stored before the limit existed: never publishable
                log.warning("resync skips %s %s: %s", record.kind, record.id, exc)
                continue
        queued += 1
    return queued
