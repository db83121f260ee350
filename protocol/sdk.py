"""The integrator SDK: typed, verified backbone events from a durable consumer.

Integrators (banks, local governments, university offices) read `CTTA_EVENTS` with their
own durable pull consumer and acknowledge each event only after they have handled it, so
a crash or restart resumes exactly after the last acknowledged event. Every event is
checked against the federation registry; one that fails is surfaced with
`verified=False` (or skipped, if asked) and is never handed out as trusted. Needs only
pydantic, nats-py and httpx.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from ctta.protocol import backbone
from ctta.protocol.envelope import (
    Envelope,
    EnvelopeError,
    ReceivedEvent,
    check_provenance,
    parse_event,
    record_event_type,
    to_structured,
)
from ctta.protocol.matches import MatchResponse
from ctta.protocol.records import PUBLISHED_MODELS, PublishedRecord, Tombstone
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.subjects import (
    ALL_EVENTS,
    RESPONSE_KIND,
    SubjectError,
    event_filter,
    parse_event_subject,
)
from ctta.protocol.taxonomy import RecordKind

log = logging.getLogger(__name__)

Payload = PublishedRecord | Tombstone | MatchResponse
Start = Literal["now", "beginning"] | datetime
"""Where a *new* consumer begins; an existing durable consumer keeps its own position."""

OnUnverified = Literal["surface", "skip"]
EVENT_KINDS = frozenset({kind.value for kind in RecordKind} | {RESPONSE_KIND})


async def load_registry(location: str | Path, *, timeout: float = 10.0) -> FederationRegistry:
    """The registry from a file or an http(s) URL; the alliance distributes it, never NATS."""
    text = str(location)
    if text.startswith(("http://", "https://")):
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(text)
            response.raise_for_status()
            return FederationRegistry.model_validate_json(response.content)
    return FederationRegistry.load(Path(location))


def event_filters(kinds: Iterable[str] = (), centres: Iterable[str] = ()) -> list[str]:
    """Subject filters selecting the given kinds and/or centres (empty means all).

    The stream then sends only what the integrator asked for, instead of the SDK fetching
    and dropping the rest.
    """
    kinds, centres = list(dict.fromkeys(kinds)), list(dict.fromkeys(centres))
    for kind in kinds:
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown kind {kind!r}; one of {sorted(EVENT_KINDS)}")
    if not kinds and not centres:
        return [ALL_EVENTS]
    try:
        return [event_filter(c, k) for c in centres or [None] for k in kinds or [None]]
    except SubjectError as exc:
        raise ValueError(str(exc)) from None


def inbox_prefix(durable: str) -> str:
    """A durable consumer's own reply inboxes: in the production topology an integrator's
    credential may subscribe only to these."""
    return f"_INBOX_{durable}"


def with_credentials(
    url: str, *, user: str | None = None, password: str | None = None, token: str | None = None
) -> str:
    """Put NATS user/password or token into the URL, where nats-py reads them on every server."""
    if token is not None and (user is not None or password is not None):
        raise ValueError("give either a token or a user and password, not both")
    if (user is None) != (password is None):
        raise ValueError("a user needs a password")
    if token is None and user is None:
        return url
    parts = urlsplit(url)
    userinfo = quote(token, safe="") if token is not None else f"{quote(user or '', safe='')}:"
    if password is not None:
        userinfo += quote(password, safe="")
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


@dataclass
class IntegratorEvent:
    """One backbone event, typed and checked; call `ack()` once it is handled.

    `verified` is True only when the signature and provenance hold against the registry
    and the data parses as the typed record named by the envelope. Otherwise `problem`
    says why, and `record` (and, for a message that is not a CloudEvent, `envelope`) is None.
    `pending` counts the events still waiting for this consumer: 0 means caught up.
    """

    subject: str
    envelope: Envelope | None
    data: dict[str, Any] | None
    record: Payload | None
    verified: bool
    problem: str | None
    stream_sequence: int
    pending: int
    _msg: Msg = field(repr=False)
    _settled: Callable[[IntegratorEvent], None] = field(repr=False)

    @property
    def received(self) -> ReceivedEvent | None:
        if self.envelope is None or self.data is None:
            return None
        return ReceivedEvent(envelope=self.envelope, data=self.data, nats_subject=self.subject)

    def to_structured(self) -> dict[str, Any]:
        """The CloudEvents JSON form, e.g. for a JSON-lines archive."""
        received = self.received
        if received is None:
            raise ValueError(f"event {self.stream_sequence} is not a CloudEvent: {self.problem}")
        return to_structured(received)

    async def ack(self) -> None:
        """Confirmed by the server, so a restart never sees this event again."""
        await self._msg.ack_sync()
        self._settled(self)

    async def nak(self, delay: float | None = None) -> None:
        """Ask for redelivery (after `delay` seconds), e.g. when a downstream is down."""
        await self._msg.nak(delay=delay)
        self._settled(self)

    async def term(self) -> None:
        """Never deliver this event again (the server emits an advisory)."""
        await self._msg.term()
        self._settled(self)


def _typed_record(event: ReceivedEvent) -> Payload:
    """The data as its model, consistent with the envelope that was signed with it."""
    subject = parse_event_subject(event.nats_subject)
    envelope = event.envelope
    kind = subject.record_kind
    if kind is None:
        try:
            response = MatchResponse.model_validate(event.data)
        except ValidationError as exc:
            raise EnvelopeError(f"data does not match the response schema: {exc}") from None
        if (response.match_id, response.centre, response.sequence) != (
            subject.id,
            envelope.centre,
            envelope.version,
        ):
            raise EnvelopeError("data match id, centre or sequence differ from the envelope")
        return response
    if envelope.type not in {record_event_type(kind, a) for a in ("upserted", "withdrawn")}:
        raise EnvelopeError(f"type {envelope.type!r} does not fit a {kind.value} subject")
    model = Tombstone if envelope.action == "withdrawn" else PUBLISHED_MODELS[kind]
    try:
        record = model.model_validate(event.data)
    except ValidationError as exc:
        raise EnvelopeError(f"data does not match the {kind.value} schema: {exc}") from None
    if (record.id, record.centre, record.kind, record.version) != (
        subject.id,
        envelope.centre,
        kind,
        envelope.version,
    ):
        raise EnvelopeError("data id, centre, kind or version differ from the envelope")
    return record  # type: ignore[return-value]


def check_message(
    msg: Msg, registry: FederationRegistry
) -> tuple[ReceivedEvent | None, Payload | None, str]:
    """(parsed event, typed record, problem); the problem is empty when the event is verified."""
    try:
        event = parse_event(msg.subject, msg.headers, msg.data)
    except EnvelopeError as exc:
        return None, None, str(exc)
    try:
        check_provenance(event, registry)
        return event, _typed_record(event), ""
    except EnvelopeError as exc:
        return event, None, str(exc)


class Subscription:
    """A durable (or, without a name, ephemeral) pull consumer on `CTTA_EVENTS`.

    Iterate it for events and `ack()` each after handling it, or give `run()` a handler
    and let it ack after the handler returns. Only `max_in_flight` events are unacked at
    a time; with the default 1, a restart after a crash redelivers the one unacked event
    (after `ack_wait`) before anything newer, so order and position are exact.
    """

    def __init__(
        self,
        nc: NatsClient,
        subscription: JetStreamContext.PullSubscription,
        registry: FederationRegistry,
        *,
        on_unverified: OnUnverified,
        max_in_flight: int,
    ) -> None:
        self.nc = nc
        self.registry = registry
        self.on_unverified = on_unverified
        self._subscription = subscription
        self._batcher = backbone.PullBatcher(subscription, max_batch=max_in_flight)
        self._buffer: list[Msg] = []
        self._unsettled: dict[int, Msg] = {}

    @classmethod
    async def open(
        cls,
        nats_url: str,
        registry: FederationRegistry,
        *,
        durable: str | None = None,
        kinds: Iterable[str] = (),
        centres: Iterable[str] = (),
        start: Start = "now",
        on_unverified: OnUnverified = "surface",
        max_in_flight: int = 1,
        ack_wait: float = 30.0,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        credentials_file: str | None = None,
        nkey_seed: str | None = None,
    ) -> Subscription:
        """Connect and bind the durable consumer, creating it with `start` if it is new.

        Credentials: user and password, a token, a NATS `.creds` file (JWT + NKey seed), or
        the NKey seed that `ctta keys init --integrator NAME` issues in the production
        topology, where the consumer `int-NAME` is pre-created and the only one it may read.
        """
        url = with_credentials(nats_url, user=user, password=password, token=token)
        name = f"ctta-integrator-{durable or 'ephemeral'}"
        nc = await backbone.connect(
            url,
            name,
            credentials_file=credentials_file,
            nkey_seed=nkey_seed,
            inbox_prefix=inbox_prefix(durable) if durable else "_INBOX",
        )
        try:
            config = consumer_config(
                durable,
                event_filters(kinds, centres),
                start,
                max_in_flight=max_in_flight,
                ack_wait=ack_wait,
            )
            subscription = await _bind(nc.jetstream(), config)
        except BaseException:
            await nc.close()
            raise
        return cls(
            nc, subscription, registry, on_unverified=on_unverified, max_in_flight=max_in_flight
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[IntegratorEvent]:
        return self

    async def __anext__(self) -> IntegratorEvent:
        while True:
            msg = await self._next_message()
            event = self._wrap(msg)
            if event.verified or self.on_unverified == "surface":
                return event
            log.warning("skipping unverified event %s: %s", msg.subject, event.problem)
            await event.term()

    async def next(self, timeout: float) -> IntegratorEvent | None:
        """The next event, or None if none arrives within `timeout` seconds."""
        try:
            return await asyncio.wait_for(self.__anext__(), timeout)
        except TimeoutError:
            return None

    async def run(self, handler: Callable[[IntegratorEvent], Awaitable[None]]) -> None:
        """Call `handler` for every event and ack it after it returns; nak if it raises."""
        async for event in self:
            try:
                await handler(event)
            except BaseException:
                await event.nak()
                raise
            await event.ack()

    async def pending(self) -> int:
        """Events in the stream this consumer has not been given yet (0: caught up)."""
        info = await self._subscription.consumer_info()
        return info.num_pending or 0

    async def close(self) -> None:
        """Hand unacked events straight back, so the next start gets them without waiting."""
        for msg in [*self._unsettled.values(), *self._buffer]:
            await msg.nak()
        self._unsettled.clear()
        self._buffer.clear()
        await self.nc.close()

    async def _next_message(self) -> Msg:
        delay = 0.2
        while not self._buffer:
            try:
                self._buffer = await self._batcher.next_batch()
                delay = 0.2
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                log.warning("fetch from %s failed (%r); retrying", backbone.EVENTS_STREAM, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        msg = self._buffer.pop(0)
        self._unsettled[msg.metadata.sequence.stream] = msg
        return msg

    def _wrap(self, msg: Msg) -> IntegratorEvent:
        event, record, problem = check_message(msg, self.registry)
        return IntegratorEvent(
            subject=msg.subject,
            envelope=event.envelope if event else None,
            data=event.data if event else None,
            record=record,
            verified=not problem,
            problem=problem or None,
            stream_sequence=msg.metadata.sequence.stream,
            pending=msg.metadata.num_pending,
            _msg=msg,
            _settled=self._settle,
        )

    def _settle(self, event: IntegratorEvent) -> None:
        self._unsettled.pop(event.stream_sequence, None)


def consumer_config(
    durable: str | None,
    filters: list[str],
    start: Start,
    *,
    max_in_flight: int = 1,
    ack_wait: float = 30.0,
) -> ConsumerConfig:
    """Explicit ack, bounded in-flight events; an ephemeral one vanishes when unused."""
    config = ConsumerConfig(
        durable_name=durable,
        name=durable,
        description="CTTA integrator",
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=max_in_flight,
        inactive_threshold=None if durable else 300.0,
    )
    if len(filters) == 1:
        config.filter_subject = filters[0]
    else:
        config.filter_subjects = filters
    if start == "now":
        config.deliver_policy = DeliverPolicy.NEW
    elif start == "beginning":
        config.deliver_policy = DeliverPolicy.ALL
    else:
        if start.tzinfo is None:
            raise ValueError("a start time must carry a timezone")
        config.deliver_policy = DeliverPolicy.BY_START_TIME
        config.opt_start_time = start
    return config


async def _bind(js: JetStreamContext, config: ConsumerConfig) -> JetStreamContext.PullSubscription:
    """Create the consumer or bind the existing one, refusing one with other filters."""
    stream = backbone.EVENTS_STREAM
    wanted = config.filter_subjects or [config.filter_subject]
    if config.durable_name is not None:
        try:
            info = await js.consumer_info(stream, config.durable_name)
        except nats.js.errors.NotFoundError:
            pass
        else:
            existing = info.config.filter_subjects or [info.config.filter_subject]
            if sorted(existing) != sorted(wanted):
                raise ValueError(
                    f"consumer {config.durable_name!r} filters {existing}, not {wanted}; "
                    "choose another name or delete it"
                )
            return await js.pull_subscribe_bind(config.durable_name, stream=stream)
    info = await js.add_consumer(stream, config)
    return await js.pull_subscribe_bind(info.name, stream=stream)
