"""The hub indexer: a durable pull consumer of every centre's events.

Per batch: check each event (subject centre = `ce-centre` = source = key owner, signature,
schema, version newer than stored), apply the good ones and dead-letter the bad ones in
one transaction, commit, then ack (good) or terminate (bad). A crash before the commit
means redelivery; a redelivered event is recognised by its id and acked again. An event
of the version already stored is a re-publication (a node answering a resync request):
acked and counted as unchanged. Only an older version is stale and dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session

from ctta.hub.alerts import service as alerts
from ctta.hub.index import service
from ctta.hub.matching import service as matching
from ctta.hub.matching.engine import RecordKey
from ctta.hub.matching.worker import Change
from ctta.hub.webhooks import service as webhooks
from ctta.protocol import backbone
from ctta.protocol.envelope import (
    EnvelopeError,
    ReceivedEvent,
    check_provenance,
    first_error,
    parse_event,
)
from ctta.protocol.matches import RESPONSE_TYPE, MatchResponse
from ctta.protocol.records import PUBLISHED_MODELS, Tombstone
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.subjects import (
    ALL_EVENTS,
    RESPONSE_KIND,
    SEARCH_KIND,
    SubjectError,
    parse_event_subject,
)
from ctta.protocol.taxonomy import RecordKind, Visibility
from ctta.server import deadletters
from ctta.server.db import session_scope

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What became of one message, and the record change it made (for the matcher)."""

    applied: bool
    dead_letter: str | None = None
    unchanged: bool = False  # the version the index holds, re-published: nothing to do
    change: Change | None = None
    event: ReceivedEvent | None = None  # set when applied: its parsed centre and time
    terms: str | None = None  # search terms of an upserted record, for saved searches


@dataclass
class IngestState:
    """What `/centres` and `/healthz` report about ingest."""

    indexed: int = 0
    duplicates: int = 0
    unchanged: int = 0
    dead_letters: int = 0
    last_batch_at: datetime | None = None
    last_error: str | None = None
    last_event_at: dict[str, datetime] = field(default_factory=dict)
    lag_seconds: dict[str, float] = field(default_factory=dict)


def _reject(reason: str) -> Outcome:
    return Outcome(applied=False, dead_letter=reason)


def apply_event(
    writer: service.IndexWriter, registry: FederationRegistry, event: ReceivedEvent
) -> Outcome:
    """Check one parsed event and apply it to the index.

    Bad events become a dead-letter outcome; what still raises (a database refusing a
    value) is caught by `isolate`, which dead-letters that one message.
    """
    try:
        check_provenance(event, registry)
    except EnvelopeError as exc:
        return _reject(str(exc))
    envelope = event.envelope
    subject = parse_event_subject(event.nats_subject)
    if subject.kind == RESPONSE_KIND:
        return _apply_response(writer.session, event)
    if subject.kind == SEARCH_KIND:
        problem = alerts.apply_search_event(writer.session, event)
        return _reject(problem) if problem else Outcome(applied=True, event=event)
    kind = subject.record_kind
    if kind is None:
        return _reject(f"{subject.kind!r} events are not indexed")
    if envelope.type not in (
        f"org.ctta.{kind.value}.upserted.v1",
        f"org.ctta.{kind.value}.withdrawn.v1",
    ):
        return _reject(f"type {envelope.type!r} does not fit a {kind.value} subject")
    model = Tombstone if envelope.action == "withdrawn" else PUBLISHED_MODELS[kind]
    try:
        record = model.model_validate(event.data)
    except ValidationError as exc:
        return _reject(f"data does not match the {kind.value} schema: {first_error(exc)}")
    if not isinstance(record, Tombstone) and record.visibility == Visibility.PRIVATE:
        return _reject("a private record must never be published")
    if (record.id, record.centre, RecordKind(record.kind), record.version) != (
        subject.id,
        envelope.centre,
        kind,
        envelope.version,
    ):
        return _reject("data id, centre, kind or version differ from the envelope")
    existing = writer.find(envelope.centre, kind.value, record.id)
    if existing is not None and existing.event_id == envelope.id:
        return Outcome(applied=False)  # redelivery of what we already applied
    if existing is not None and existing.version == envelope.version:
        return Outcome(applied=False, unchanged=True)  # re-published, e.g. for a resync
    if existing is not None and existing.version > envelope.version:
        return _reject(
            f"stale version {envelope.version}; the index holds version {existing.version}"
        )
    key = RecordKey(envelope.centre, kind.value, record.id)
    if isinstance(record, Tombstone):
        writer.tombstone(event, envelope.centre, kind.value, record.id, record.version)
        return Outcome(applied=True, change=Change(key, record.version, None), event=event)
    data = record.model_dump(mode="json")  # normalised: what matching and search may rely on
    terms = service.record_terms(record)
    writer.upsert(event, record, data, terms)
    return Outcome(applied=True, change=Change(key, record.version, data), event=event, terms=terms)


def _apply_response(session: Session, event: ReceivedEvent) -> Outcome:
    """A centre's answer to a match: valid only from a party, in pipeline order."""
    envelope = event.envelope
    if envelope.type != RESPONSE_TYPE:
        return _reject(f"type {envelope.type!r} does not fit a response subject")
    try:
        response = MatchResponse.model_validate(event.data)
    except ValidationError as exc:
        return _reject(f"data does not match the response schema: {first_error(exc)}")
    if (response.centre, response.sequence) != (envelope.centre, envelope.version) or (
        f"{RESPONSE_KIND}/{response.match_id}" != envelope.subject
    ):
        return _reject("response centre, sequence or match id differ from the envelope")
    problem = matching.apply_response(session, response)
    if problem == matching.DUPLICATE:
        return Outcome(applied=False)
    return _reject(problem) if problem else Outcome(applied=True, event=event)


def apply_batch(engine: Engine, registry: FederationRegistry, messages: list[Msg]) -> list[Outcome]:
    """Apply a batch in one transaction; returns one outcome per message, in order."""
    parsed: list[ReceivedEvent | EnvelopeError] = []
    for msg in messages:
        try:
            parsed.append(parse_event(msg.subject, msg.headers, msg.data))
        except EnvelopeError as exc:
            parsed.append(exc)
    outcomes: list[Outcome] = []
    with session_scope(engine, write=True) as session:
        writer = service.IndexWriter(session)
        writer.prefetch([key for item in parsed if (key := _index_key(item)) is not None])
        hooks = webhooks.active_webhooks(session)
        searches = alerts.active(session)
        for msg, item in zip(messages, parsed, strict=True):
            outcome = (
                _reject(str(item))
                if isinstance(item, EnvelopeError)
                else apply_event(writer, registry, item)
            )
            if outcome.applied and hooks and isinstance(item, ReceivedEvent):
                webhooks.enqueue(session, hooks, item)
            if searches and outcome.terms is not None and outcome.change and outcome.change.data:
                alerts.enqueue_alerts(
                    session, searches, outcome.change.data, set(outcome.terms.split())
                )
            if outcome.dead_letter is not None:
                deadletters.record_message(session, msg, outcome.dead_letter)
            outcomes.append(outcome)
        writer.finish()
    return outcomes


def isolate(
    engine: Engine, registry: FederationRegistry, messages: list[Msg]
) -> list[Outcome] | None:
    """After a failed batch, apply each message alone so one poison message cannot block the rest.

    A message that still fails on its own is dead-lettered with the error. If nothing at
    all can be written (not even a dead letter), the database is the problem: None.
    """
    outcomes: list[Outcome] = []
    written = False
    for msg in messages:
        try:
            outcomes += apply_batch(engine, registry, [msg])
            written = True
            continue
        except Exception as exc:
            reason = f"could not be applied: {type(exc).__name__}: {exc}"[:1000]
        try:
            with session_scope(engine, write=True) as session:
                deadletters.record_message(session, msg, reason)
        except Exception:
            log.exception("cannot even dead-letter %s", msg.subject)
            continue
        written = True
        outcomes.append(_reject(reason))
    return outcomes if written and len(outcomes) == len(messages) else None


def _index_key(item: ReceivedEvent | EnvelopeError) -> tuple[str, str, str] | None:
    """The index row an event may touch, to read all of a batch's rows at once."""
    if isinstance(item, EnvelopeError):
        return None
    try:
        subject = parse_event_subject(item.nats_subject)
    except SubjectError:
        return None
    return (subject.centre, subject.kind, subject.id) if subject.record_kind else None


@dataclass
class Indexer:
    engine: Engine
    registry: FederationRegistry
    consumer: str = backbone.HUB_INDEXER
    batch_size: int = 256
    on_changes: Callable[[list[Change]], None] = lambda changes: None
    state: IngestState = field(default_factory=IngestState)

    async def run(self, js: JetStreamContext) -> None:
        """Consume until cancelled; survives NATS outages and database hiccups."""
        subscription = await backbone.bind_pull(
            js, backbone.EVENTS_STREAM, backbone.indexer_consumer_config(self.consumer)
        )
        batcher = backbone.PullBatcher(subscription, max_batch=self.batch_size)
        handling: asyncio.Task[None] | None = None
        try:
            while True:
                # The next batch is fetched while the previous one is applied; batches are
                # still applied one after another, in stream order.
                try:
                    messages = await batcher.next_batch()
                except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                    self.state.last_error = f"fetch: {exc!r}"
                    log.warning("indexer fetch failed: %r; retrying", exc)
                    await asyncio.sleep(0.5)
                    continue
                if handling is not None:
                    await handling
                    handling = None
                if messages:
                    handling = asyncio.create_task(self._handle(messages))
        finally:
            if handling is not None:
                handling.cancel()

    async def _handle(self, messages: list[Msg]) -> None:
        try:
            outcomes = await asyncio.to_thread(apply_batch, self.engine, self.registry, messages)
        except Exception as exc:
            self.state.last_error = f"apply: {exc!r}"
            log.warning("indexer could not apply a batch of %d (%r); isolating", len(messages), exc)
            outcomes = await asyncio.to_thread(isolate, self.engine, self.registry, messages)
            if outcomes is None:  # the database itself: let the events come back later
                for msg in messages:
                    await msg.nak(delay=2)
                return
        self.on_changes([outcome.change for outcome in outcomes if outcome.change is not None])
        now = datetime.now(UTC)
        for msg, outcome in zip(messages, outcomes, strict=True):
            if outcome.dead_letter is not None:
                self.state.dead_letters += 1
                log.warning("dead letter %s: %s", msg.subject, outcome.dead_letter)
                await msg.term()
                continue
            await msg.ack()
            if outcome.unchanged:
                self.state.unchanged += 1
                continue
            if not outcome.applied:
                self.state.duplicates += 1
                continue
            self.state.indexed += 1
            if outcome.event is not None:
                centre = outcome.event.envelope.centre
                self.state.last_event_at[centre] = now
                self.state.lag_seconds[centre] = (now - outcome.event.envelope.time).total_seconds()
        self.state.last_batch_at = now
        self.state.last_error = None


async def rebuild(engine: Engine, registry: FederationRegistry, js: JetStreamContext) -> int:
    """Empty the index and refill it from the newest message of every subject in the stream."""
    await asyncio.to_thread(_clear, engine)
    info = await js.stream_info(backbone.EVENTS_STREAM)
    if info.state.messages == 0:
        return 0
    subscription = await js.pull_subscribe(
        ALL_EVENTS,
        stream=backbone.EVENTS_STREAM,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=AckPolicy.EXPLICIT,
            inactive_threshold=60.0,
        ),
    )
    batcher = backbone.PullBatcher(subscription, max_batch=512, idle_wait=1.0)
    applied = 0
    try:
        while True:
            messages = await batcher.next_batch()
            if not messages:
                break
            outcomes = await asyncio.to_thread(apply_batch, engine, registry, messages)
            applied += sum(outcome.applied for outcome in outcomes)
            for msg in messages:
                await msg.ack()
            if messages[-1].metadata.num_pending == 0:
                break
    finally:
        await subscription.unsubscribe()
    return applied


def _clear(engine: Engine) -> None:
    with session_scope(engine, write=True) as session:
        service.clear(session)
