"""Anti-entropy: compare each centre's manifest with the index and ask for what is missing.

Every `interval` seconds the hub compares, for each centre whose latest heartbeat is fresh
and reports an empty outbox, the manifest summary of that heartbeat with the same summary
computed over its index (live records only). A difference seen on `confirmations`
consecutive checks with the index unchanged in between (one alone may be an event in
flight, and a changing index one still catching up) becomes a resync request on
`ctta.v1.route.<centre>.resync.<id>`, written to the hub's outbox so JetStream delivers it
after any link outage. It carries the hub's summary per bucket; the node re-publishes the
records of the buckets that differ. Requests to one centre are spaced by a repair window
that doubles while the gap stays open (up to 64 × 3 intervals), so a gap the node cannot
close (a record the hub holds and the node has never heard of) costs a request every few
hours, not one a minute.
The state of every centre is stored in `centre_sync` and shown at `/api/v1/centres`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session
from ulid import ULID

from ctta.hub.centres import service
from ctta.hub.centres.models import CentreHeartbeat, CentreSync
from ctta.hub.index import service as index
from ctta.protocol.envelope import hub_message
from ctta.protocol.manifest import Entry, ManifestSummary, buckets, summary
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.resync import RESYNC_TYPE, ResyncRequest
from ctta.protocol.subjects import resync_subject
from ctta.server.db import session_scope
from ctta.server.outbox import service as outbox

log = logging.getLogger(__name__)

MAX_WINDOW_DOUBLINGS = 6


@dataclass(frozen=True)
class Policy:
    """When a difference is believed, and how long to wait for a repair before asking again."""

    interval: float
    heartbeat_timeout: float
    confirmations: int = 2
    repair_checks: int = 3

    def repair_window(self, unsuccessful: int) -> timedelta:
        """Wait after the n-th request of an open gap: `repair_checks` intervals, doubling."""
        doublings = min(max(unsuccessful - 1, 0), MAX_WINDOW_DOUBLINGS)
        return timedelta(seconds=self.interval * self.repair_checks * 2**doublings)


def _node_summary(
    beat: CentreHeartbeat | None, now: datetime, policy: Policy
) -> ManifestSummary | None:
    """The manifest to compare with, or None when this heartbeat cannot be trusted for it."""
    if beat is None or beat.manifest_count is None or beat.manifest_digest is None:
        return None
    if beat.outbox_backlog or not service.is_alive(beat, now, policy.heartbeat_timeout):
        return None  # events still on their way, or a node that is not there to answer
    return ManifestSummary(count=beat.manifest_count, digest=beat.manifest_digest)


def _compare(
    row: CentreSync | None, centre: str, node: ManifestSummary, hub: ManifestSummary, now: datetime
) -> CentreSync:
    row = row or CentreSync(
        centre=centre,
        node_count=node.count,
        node_digest=node.digest,
        hub_count=hub.count,
        hub_digest=hub.digest,
        in_sync=True,
        checked_at=now,
    )
    # A hub whose index changed since the last check is still taking in events (after a
    # link outage its source catches up while the node already reports an empty outbox):
    # that difference is not confirmed yet.
    hub_moving = row.hub_digest != hub.digest
    row.node_count, row.node_digest = node.count, node.digest
    row.hub_count, row.hub_digest = hub.count, hub.digest
    row.in_sync, row.checked_at = node == hub, now
    if row.in_sync:
        row.mismatched_checks, row.mismatched_since = 0, None
        row.repairs_since_in_sync, row.last_in_sync_at = 0, now
    else:
        row.mismatched_checks = 1 if hub_moving else row.mismatched_checks + 1
        row.mismatched_since = row.mismatched_since or now
    return row


def _repair_due(row: CentreSync, policy: Policy, now: datetime) -> bool:
    if row.in_sync or row.mismatched_checks < policy.confirmations:
        return False
    if row.repairs_since_in_sync == 0 or row.last_repair_requested_at is None:
        return True
    return now - row.last_repair_requested_at >= policy.repair_window(row.repairs_since_in_sync)


def _request(
    session: Session,
    row: CentreSync,
    entries: list[Entry],
    node: ManifestSummary,
    hub: ManifestSummary,
    now: datetime,
) -> None:
    """Queue a resync request to the centre in the hub's outbox (same transaction as `row`)."""
    request = ResyncRequest(
        request_id=str(ULID()),
        centre=row.centre,
        requested_at=now,
        hub=hub,
        node=node,
        buckets=buckets(entries),
    )
    row.repairs_requested += 1
    row.repairs_since_in_sync += 1
    row.last_repair_requested_at, row.last_request_id = now, request.request_id
    message = hub_message(
        nats_subject=resync_subject(row.centre, request.request_id),
        event_type=RESYNC_TYPE,
        ce_subject=f"resync/{request.request_id}",
        sequence=row.repairs_requested,
        msg_id=request.request_id,
        body=request.model_dump_json().encode(),
    )
    outbox.enqueue(
        session, message, kind="resync", record_id=request.request_id, version=row.repairs_requested
    )
    log.warning(
        "centre %s differs from the index (node %d records, hub %d); resync %s requested",
        row.centre,
        node.count,
        hub.count,
        request.request_id,
    )


def check(
    session: Session, registry: FederationRegistry, policy: Policy, now: datetime
) -> list[str]:
    """Compare every centre that can be compared; returns the centres asked to resync."""
    beats, syncs = service.heartbeats(session), service.sync_states(session)
    requested = []
    for centre in registry.centres:
        node = _node_summary(beats.get(centre.id), now, policy)
        if node is None:
            continue
        entries = index.live_entries(session, centre.id)
        hub = summary(entries)
        row = _compare(syncs.get(centre.id), centre.id, node, hub, now)
        if _repair_due(row, policy, now):
            _request(session, row, entries, node, hub, now)
            requested.append(centre.id)
        session.add(row)
    return requested


async def run_anti_entropy(
    engine: Engine,
    registry: FederationRegistry,
    *,
    interval: float,
    heartbeat_timeout: float,
    wake_relay: Callable[[], None],
) -> None:
    """Check every `interval` seconds until cancelled; requests leave through the hub relay."""
    policy = Policy(interval=interval, heartbeat_timeout=heartbeat_timeout)

    def check_once() -> list[str]:
        with session_scope(engine, write=True) as session:
            return check(session, registry, policy, datetime.now(UTC))

    while True:
        await asyncio.sleep(interval)
        if await asyncio.to_thread(check_once):
            wake_relay()
