"""The heartbeat a node sends on `ctta.v1.hb.<centre>` so the hub can tell it is alive.

Core NATS, not JetStream: liveness needs no history. Heartbeats are not signed; the hub
believes only what a stale one could do no harm with (liveness, counts, backlog, and the
manifest summary, whose worst misuse is a needless resync request).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ctta.protocol.manifest import ManifestSummary
from ctta.protocol.records import CentreId, StrictModel


class Heartbeat(StrictModel):
    centre: CentreId
    node_url: str | None = Field(default=None, max_length=500)
    sent_at: datetime
    outbox_backlog: int = Field(ge=0)
    counts: dict[str, int] = Field(default_factory=dict, description="Published records by kind")
    manifest: ManifestSummary | None = Field(
        default=None,
        description="Count and digest of what the node publishes, for anti-entropy; "
        "absent from nodes that predate it",
    )
