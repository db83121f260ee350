"""Anti-entropy: the hub asks a centre to re-publish the parts of its catalogue that differ.

Sent on `ctta.v1.route.<centre>.resync.<request_id>` through the hub's outbox, so JetStream
delivers it even after a link outage. It carries the hub's summary per bucket (see
`ctta.protocol.manifest`); the node re-publishes the current state of every record in a
bucket whose summary differs from its own. Re-publishing is safe: the hub ignores a
version it already holds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from ctta.protocol.manifest import BUCKET_PATTERN, ManifestSummary
from ctta.protocol.records import ULID_PATTERN, CentreId, StrictModel

RESYNC_TYPE = "org.ctta.resync.requested.v1"

Bucket = Annotated[str, StringConstraints(pattern=BUCKET_PATTERN)]


class ResyncRequest(StrictModel):
    """Data of `org.ctta.resync.requested.v1`: what the hub holds of the centre, by bucket."""

    request_id: str = Field(pattern=ULID_PATTERN)
    centre: CentreId
    requested_at: datetime
    hub: ManifestSummary = Field(description="What the hub's index holds of the centre")
    node: ManifestSummary = Field(description="The centre's manifest the hub compared it with")
    buckets: dict[Bucket, ManifestSummary] = Field(
        description="The hub's summary per non-empty bucket (`00`–`ff`); absent means empty",
        max_length=256,
    )
