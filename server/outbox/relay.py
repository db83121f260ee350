"""The outbox relay: publishes unsent events in write order and never drops one.

One relay per outbox (a node's record events, the hub's routes). It wakes when a write
commits (or every few seconds), publishes each pending row with its `Nats-Msg-Id` and
waits for the JetStream ack. A duplicate ack counts as success, so a crash between
publishing and marking a row only re-sends an event the stream already ignores. On any
error it backs off and retries the same row, which keeps per-record order: a later
version is never published before an earlier one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nats.js import JetStreamContext
from sqlalchemy import Engine

from ctta.protocol.backbone import PublishError, raise_if_cancelled
from ctta.server.db import session_scope
from ctta.server.outbox import service
from ctta.server.outbox.models import OutboxEvent

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 5.0
PUBLISH_TIMEOUT_SECONDS = 5.0


@dataclass
class RelayState:
    """What `/federation/status` and `/metrics` report about the relay (counts since start)."""

    published: int = 0
    last_published_at: datetime | None = None
    last_error: str | None = None
    failures: int = 0


@dataclass
class OutboxRelay:
    engine: Engine
    batch_size: int = 200
    max_backoff: float = 5.0
    state: RelayState = field(default_factory=RelayState)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _loop: asyncio.AbstractEventLoop | None = None

    def __post_init__(self) -> None:
        self._loop = asyncio.get_running_loop()

    def wake(self) -> None:
        """Called from request threads after a commit; safe from any thread."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, js: JetStreamContext) -> None:
        backoff = 0.05
        while True:
            raise_if_cancelled()
            rows = await asyncio.to_thread(self._pending)
            if not rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL_SECONDS)
                self._wake.clear()
                continue
            sent, error = await self._publish(js, rows)
            if sent:
                await asyncio.to_thread(self._mark, sent)
            if error is None:
                backoff = 0.05
                continue
            failed = rows[len(sent)]
            await asyncio.to_thread(self._record_failure, failed.seq, error)
            log.warning(
                "outbox: publishing %s failed (%s); retrying in %.2fs",
                failed.event_id,
                error,
                backoff,
                extra={"event_id": failed.event_id, "subject": failed.subject, "error": error},
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def _publish(
        self, js: JetStreamContext, rows: list[OutboxEvent]
    ) -> tuple[list[int], str | None]:
        """Publish rows in order until one fails; return the seqs sent and the error."""
        sent: list[int] = []
        for row in rows:
            try:
                await js.publish(
                    row.subject, row.body, timeout=PUBLISH_TIMEOUT_SECONDS, headers=row.headers
                )
            except PublishError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self.state.last_error = error
                self.state.failures += 1
                return sent, error
            assert row.seq is not None
            sent.append(row.seq)
        self.state.published += len(sent)
        self.state.last_published_at = datetime.now(UTC)
        self.state.last_error = None
        return sent, None

    def _pending(self) -> list[OutboxEvent]:
        with session_scope(self.engine) as session:
            return service.pending(session, self.batch_size)

    def _mark(self, seqs: list[int]) -> None:
        with session_scope(self.engine, write=True) as session:
            service.mark_published(session, seqs, datetime.now(UTC))

    def _record_failure(self, seq: int | None, error: str) -> None:
        assert seq is not None
        with session_scope(self.engine, write=True) as session:
            service.record_failure(session, seq, error)
