"""Keep a board of open technology demands from every centre, resuming after restarts.

Run: python docs/examples/follow_demands.py nats://backbone:4222 federation.json
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field

from ctta.protocol.records import PublishedDemand, Tombstone
from ctta.protocol.sdk import IntegratorEvent, Subscription, load_registry

log = logging.getLogger("demand-board")


@dataclass
class DemandBoard:
    """Newest version of each open demand, keyed by (centre, id)."""

    demands: dict[tuple[str, str], PublishedDemand] = field(default_factory=dict)

    async def handle(self, event: IntegratorEvent) -> None:
        """Called once per event; raising here makes the backbone deliver it again."""
        if not event.verified:
            log.warning("ignoring unverified event %s: %s", event.subject, event.problem)
            return
        record = event.record
        if isinstance(record, PublishedDemand):
            key = (record.centre, record.id)
            current = self.demands.get(key)
            if current is None or current.version < record.version:
                self.demands[key] = record
        elif isinstance(record, Tombstone):
            self.demands.pop((record.centre, record.id), None)


async def follow(
    nats_url: str, registry_location: str, board: DemandBoard, *, stop_after: int | None = None
) -> None:
    """Consume demand events into `board`; each is acked only after `handle` returns."""
    registry = await load_registry(registry_location)
    async with await Subscription.open(
        nats_url, registry, durable="demand-board", kinds=["demand"], start="beginning"
    ) as subscription:
        handled = 0
        async for event in subscription:
            await board.handle(event)
            await event.ack()
            handled += 1
            if handled == stop_after:
                return


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(follow(sys.argv[1], sys.argv[2], DemandBoard()))
