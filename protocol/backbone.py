"""The one adapter between our code and nats-py.

It owns the connection options that keep a long-running service alive (reconnect
forever, log every error), the stream and consumer definitions, and the batching fetch
that works around nats-py's blocking behaviour. Switching client library touches only
this module.
"""

from __future__ import annotations

import asyncio
import logging
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
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from ctta.protocol.subjects import ALL_EVENTS, ALL_ROUTES

log = logging.getLogger(__name__)

EVENTS_STREAM = "CTTA_EVENTS"
ROUTES_STREAM = "CTTA_ROUTES"
HUB_INDEXER = "hub-indexer"

# Keep a few versions per record for forensics; the newest one is the catalogue entry.
HISTORY_PER_SUBJECT = 5
# Longer than any realistic relay retry gap, so a re-sent event is recognised as a duplicate.
DUPLICATE_WINDOW_SECONDS = 2 * 3600.0

PublishError = (nats.errors.Error, nats.js.errors.Error, asyncio.TimeoutError, OSError)


def events_stream_config() -> StreamConfig:
    return StreamConfig(
        name=EVENTS_STREAM,
        description="State of every federation record, newest per subject; the catalogue.",
        subjects=[ALL_EVENTS],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_msgs_per_subject=HISTORY_PER_SUBJECT,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        allow_direct=True,
    )


def routes_stream_config() -> StreamConfig:
    return StreamConfig(
        name=ROUTES_STREAM,
        description="Hub-to-centre match proposals and updates.",
        subjects=[ALL_ROUTES],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_msgs_per_subject=HISTORY_PER_SUBJECT,
        discard=DiscardPolicy.OLD,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
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
) -> NatsClient:
    """Connect, retrying until the server answers, then keep reconnecting forever.

    nats-py gives up after 60 reconnects by default and raises if the first connection
    fails; a federation service must instead outlive any backbone outage.
    """

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
                url,
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
            )
        except (TimeoutError, nats.errors.NoServersError, OSError) as exc:
            raise_if_cancelled()
            log.warning("nats %s: cannot reach %s (%s); retrying in %.1fs", name, url, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        nc.options["max_reconnect_attempts"] = -1
        if _cancelling():
            await nc.close()
            raise_if_cancelled()
        await notify("connected")
        return nc


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
            return first
        try:
            rest = await self.subscription.fetch(self.max_batch - 1, timeout=self.linger)
        except (TimeoutError, nats.errors.TimeoutError):
            rest = []
        raise_if_cancelled()
        return first + rest
