"""Turning a change owned by this centre into a signed event in the outbox."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from ctta.protocol.envelope import MAX_EVENT_BYTES, build_event
from ctta.protocol.signing import SigningKey
from ctta.server.outbox import service as outbox


class EventTooLarge(ValueError):
    """The signed event would be larger than the hub accepts; the write must be refused.

    Raised inside the write's transaction, so neither the change nor its event is kept
    (the hub would otherwise dead-letter the event and the federation never see it).
    """


@dataclass(frozen=True)
class Publisher:
    """The centre's identity and key, and how to wake the relay after a commit."""

    centre: str
    signing_key: SigningKey
    schema_base_url: str
    wake_relay: Callable[[], None] = lambda: None

    def schema_url(self, name: str) -> str:
        return f"{self.schema_base_url.rstrip('/')}/api/v1/schemas/{name}.json"

    def enqueue(
        self,
        session: Session,
        *,
        subject: str,
        kind: str,
        entity_id: str,
        version: int,
        event_type: str,
        data: dict[str, Any],
        schema: str,
        time: datetime,
    ) -> None:
        """Sign the event and add it to the outbox inside the caller's transaction."""
        event = build_event(
            nats_subject=subject,
            centre=self.centre,
            event_type=event_type,
            ce_subject=f"{kind}/{entity_id}",
            version=version,
            data=data,
            dataschema=self.schema_url(schema),
            signing_key=self.signing_key,
            time=time,
        )
        if len(event.body) > MAX_EVENT_BYTES:  # the hub's check in `parse_event`
            raise EventTooLarge(
                f"the published part of this {kind} would be an event of {len(event.body)} "
                f"bytes; the federation accepts at most {MAX_EVENT_BYTES}"
            )
        outbox.enqueue(session, event, kind=kind, record_id=entity_id, version=version)
