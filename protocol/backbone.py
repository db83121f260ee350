"""The one adapter between our code and nats-py.

It owns the connection options that keep a long-running service alive (reconnect
forever, log every error), the stream and consumer definitions, and the batching fetch
that works around nats-py's blocking behaviour. Switching client library touches only
this module.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    ExternalStream,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
)

from ctta.protocol.subjects import (
    ALL_EVENTS,
    ALL_ROUTES,
    centre_events,
    centre_routes,
    route_delivery,
    source_delivery,
)

log = logging.getLogger(__name__)

EVENTS_STREAM = "CTTA_EVENTS"
ROUTES_STREAM = "CTTA_ROUTES"
HUB_INDEXER = "hub-indexer"
# Inbox prefix of the connections that provision centres' leaves: the only inboxes a leaf
# credential may publish replies to. Other clients keep their own prefixes, so a leaf can
# neither read nor forge their replies and deliveries.
PROVISIONING_INBOX = "_INBOX_ops"
# Leaf topology: the hub cluster's JetStream domain and replication; each centre's leaf
# server has its own domain named after the centre.
HUB_DOMAIN = "hub"
HUB_REPLICAS = 3

# Keep a few versions per record for forensics; the newest one is the catalogue entry.
HISTORY_PER_SUBJECT = 5
# Longer than any realistic relay retry gap, so a re-sent event is recognised as a duplicate.
DUPLICATE_WINDOW_SECONDS = 2 * 3600.0

PublishError = (nats.errors.Error, nats.js.errors.Error, asyncio.TimeoutError, OSError)


def events_stream_config(
    subjects: list[str] | None = None,
    sources: list[StreamSource] | None = None,
    replicas: int = 1,
) -> StreamConfig:
    """The event catalogue. Single server: listens on every centre's events. Leaf topology:
    a centre's stream listens on its own events; the hub's only sources the centres'."""
    return StreamConfig(
        name=EVENTS_STREAM,
        description="State of every federation record, newest per subject; the catalogue.",
        subjects=[ALL_EVENTS] if subjects is None and sources is None else subjects,
        sources=sources,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_msgs_per_subject=HISTORY_PER_SUBJECT,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        allow_direct=True,
    )


def routes_stream_config(
    sources: list[StreamSource] | None = None, replicas: int = 1
) -> StreamConfig:
    """Hub-to-centre routes. At a centre's leaf it only sources the centre's own routes, so
    the node binds its inbox to the same stream name on either topology."""
    return StreamConfig(
        name=ROUTES_STREAM,
        description="Hub-to-centre match proposals and updates.",
        subjects=[ALL_ROUTES] if sources is None else None,
        sources=sources,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_msgs_per_subject=HISTORY_PER_SUBJECT,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )


def hub_events_sources(centres: list[str]) -> list[StreamSource]:
    """One source per centre, each filtered to that centre's own subjects: a message a
    centre stored under another centre's name is never copied to the hub."""
    return [
        StreamSource(
            name=EVENTS_STREAM,
            filter_subject=centre_events(centre),
            external=ExternalStream(api=f"$JS.{centre}.API", deliver=source_delivery(centre)),
        )
        for centre in centres
    ]


def centre_inbox_source(centre: str) -> StreamSource:
    return StreamSource(
        name=ROUTES_STREAM,
        filter_subject=centre_routes(centre),
        external=ExternalStream(api=f"$JS.{HUB_DOMAIN}.API", deliver=route_delivery(centre)),
    )


def indexer_consumer_config(durable: str = HUB_INDEXER) -> ConsumerConfig:
    """The hub's durable pull consumer of all centre events."""
    return ConsumerConfig(
        durable_name=durable,
        description="Hub index: every centre event, explicit ack.",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=10_000,
        filter_subject=ALL_EVENTS,
    )


async def connect(
    url: str,
    name: str,
    *,
    on_state_change: Callable[[str], Awaitable[None] | None] | None = None,
    connect_timeout: float = 2.0,
    credentials_file: str | None = None,
    nkey_seed: str | None = None,
    inbox_prefix: str = "_INBOX",
) -> NatsClient:
    """Connect, retrying until the server answers, then keep reconnecting forever.

    nats-py gives up after 60 reconnects by default and raises if the first connection
    fails; a federation service must instead outlive any backbone outage. `url` may list
    several servers of a cluster, comma-separated; `nkey_seed` logs in as an NKey user.
    """
    servers = [server.strip() for server in url.split(",") if server.strip()]

    async def notify(state: str) -> None:
        log.info("nats %s: %s", name, state)
        if on_state_change is not None:
            result = on_state_change(state)
            if asyncio.iscoroutine(result):
                await result

    async def error_cb(exc: Exception) -> None:
        # Permission errors surface only here in nats-py; never drop them silently.
        log.warning("nats %s error: %s", name, exc)

    async def disconnected_cb() -> None:
        await notify("disconnected")

    async def reconnected_cb() -> None:
        await notify("connected")

    async def closed_cb() -> None:
        await notify("closed")

    delay = 0.2
    while True:
        try:
            # With -1 here nats-py would loop inside connect() forever, deaf to cancellation;
            # so the first attempt is bounded and the unlimited reconnects are set after it.
            nc = await nats.connect(
                servers,
                name=name,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.5,
                connect_timeout=connect_timeout,
                allow_reconnect=True,
                error_cb=error_cb,
                disconnected_cb=disconnected_cb,
                reconnected_cb=reconnected_cb,
                closed_cb=closed_cb,
                user_credentials=credentials_file,
                nkeys_seed_str=nkey_seed,
                inbox_prefix=inbox_prefix,
            )
        except (TimeoutError, nats.errors.NoServersError, OSError) as exc:
            raise_if_cancelled()
            log.warning(
                "nats %s: cannot reach %s (%s); retrying in %.1fs", name, redact(url), exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        nc.options["max_reconnect_attempts"] = -1
        if _cancelling():
            await nc.close()
            raise_if_cancelled()
        await notify("connected")
        return nc


def redact(url: str) -> str:
    """A NATS URL fit for a log line: credentials in it are replaced by `***`."""
    return re.sub(r"//[^/@,]*@", "//***@", url)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_if_cancelled() -> None:
    """Honour a cancellation that a library swallowed (the asyncio.wait_for race of Python
    3.11, inside nats-py's connect, fetch and publish); loops call this once per turn."""
    if _cancelling():
        raise asyncio.CancelledError


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> str:
    """Create the stream or bring its config up to date; returns what was done."""
    try:
        await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        return "created"
    await js.update_stream(config)
    return "updated"


async def ensure_consumer(js: JetStreamContext, stream: str, config: ConsumerConfig) -> str:
    """Create the durable consumer if missing (an existing one keeps its position)."""
    assert config.durable_name
    try:
        await js.consumer_info(stream, config.durable_name)
        return "exists"
    except nats.js.errors.NotFoundError:
        await js.add_consumer(stream, config)
        return "created"


async def bind_pull(
    js: JetStreamContext, stream: str, config: ConsumerConfig
) -> JetStreamContext.PullSubscription:
    """Create the durable consumer if missing and bind to it, retrying until the stream exists."""
    assert config.durable_name
    delay = 0.2
    while True:
        try:
            await ensure_consumer(js, stream, config)
            return await js.pull_subscribe_bind(config.durable_name, stream=stream)
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            log.warning(
                "cannot bind %s on %s (%r); is `ctta backbone init` done? retrying in %.1fs",
                config.durable_name,
                stream,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def provision_single_server(js: JetStreamContext) -> dict[str, str]:
    """Streams and consumers of the single-server topology; safe to run any number of times."""
    return {
        EVENTS_STREAM: await ensure_stream(js, events_stream_config()),
        ROUTES_STREAM: await ensure_stream(js, routes_stream_config()),
        f"{EVENTS_STREAM}/{HUB_INDEXER}": await ensure_consumer(
            js, EVENTS_STREAM, indexer_consumer_config()
        ),
    }


async def provision_hub(js: JetStreamContext, centres: list[str]) -> dict[str, str]:
    """The hub cluster's streams (replicated) and its indexer, in domain `hub`."""
    events = events_stream_config(sources=hub_events_sources(centres), replicas=HUB_REPLICAS)
    return {
        f"{HUB_DOMAIN}/{EVENTS_STREAM}": await ensure_stream(js, events),
        f"{HUB_DOMAIN}/{ROUTES_STREAM}": await ensure_stream(
            js, routes_stream_config(replicas=HUB_REPLICAS)
        ),
        f"{HUB_DOMAIN}/{EVENTS_STREAM}/{HUB_INDEXER}": await ensure_consumer(
            js, EVENTS_STREAM, indexer_consumer_config()
        ),
    }


async def provision_centre(js: JetStreamContext, centre: str) -> dict[str, str]:
    """A centre's leaf streams: its own events, and its inbox sourcing its routes."""
    return {
        f"{centre}/{EVENTS_STREAM}": await ensure_stream(
            js, events_stream_config(subjects=[centre_events(centre)])
        ),
        f"{centre}/{ROUTES_STREAM}": await ensure_stream(
            js, routes_stream_config(sources=[centre_inbox_source(centre)])
        ),
    }


async def provision_leaf_topology(
    nc: NatsClient, centres: list[str], *, timeout: float = 5.0
) -> dict[str, str]:
    """Everything, from one connection to the hub cluster: the hub's streams, then each
    centre's through its domain's API across the leaf link. A centre whose leaf is not
    connected is reported and skipped; running again later completes it."""
    outcome = await provision_hub(nc.jetstream(timeout=timeout), centres)
    for centre in centres:
        try:
            outcome |= await provision_centre(nc.jetstream(domain=centre, timeout=timeout), centre)
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            outcome[f"{centre}/*"] = f"unreachable ({exc!r}); is its leaf server connected?"
    return outcome


@dataclass
class PullBatcher:
    """Fetch batches from a pull consumer with low latency when idle and high throughput under load.

    nats-py's `fetch(n)` waits for all `n` messages until its timeout, which adds the whole
    timeout to the latency of a lone event. So: wait for one message with a long poll,
    then collect whatever else is ready with a short linger.
    """

    subscription: JetStreamContext.PullSubscription
    max_batch: int = 256
    idle_wait: float = 2.0
    linger: float = 0.005

    async def next_batch(self) -> list[Msg]:
        try:
            first = await self.subscription.fetch(1, timeout=self.idle_wait)
        except (TimeoutError, nats.errors.TimeoutError):
            raise_if_cancelled()  # fetch's inner wait_for can swallow a cancellation
            return []
        if self.max_batch == 1:
            return genuine(first)
        try:
            rest = await self.subscription.fetch(self.max_batch - 1, timeout=self.linger)
        except (TimeoutError, nats.errors.TimeoutError):
            rest = []
        raise_if_cancelled()
        return genuine(first + rest)


def genuine(messages: list[Msg]) -> list[Msg]:
    """Only what JetStream delivered: its messages reply to `$JS.ACK.…`. Anything else
    was published into our inbox by another client, and acknowledging it would publish
    to whatever subject it names as its reply (a stream purge, say); it is dropped."""
    kept = []
    for msg in messages:
        if msg.reply.startswith("$JS.ACK."):
            kept.append(msg)
        else:
            log.warning("dropped a message JetStream did not send to this inbox: %s", msg.subject)
    return kept
