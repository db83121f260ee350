"""Observability shared by the node and the hub: Prometheus `/metrics`, `/readyz`, HTTP metrics.

Each app gets its own `CollectorRegistry` (never the global one: several nodes and a hub
share a test process). Most values are read at scrape time from what the app already
keeps — `app.state` (relay, NATS state, task restarts) and cheap SQL counts (outbox
backlog, dead letters) — so the code that does the work carries no metric calls. Only
what cannot be read afterwards is counted as it happens: HTTP requests here, published
events and publish errors in the relay's state.

`/metrics` and `/healthz` need no token, as usual for scrapers and probes; they show
counts and states, never record content. Keep them off the public ingress if that matters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctta.protocol.backbone import PublishError, raise_if_cancelled
from ctta.server import deadletters
from ctta.server.outbox import service as outbox
from ctta.server.outbox.models import OutboxEvent

log = logging.getLogger(__name__)

T = TypeVar("T")

NATS_STATES = ("connecting", "connected", "disconnected", "closed")
DATABASE_TIMEOUT_SECONDS = 3.0
CONSUMER_SAMPLE_SECONDS = 5.0
# Any other method becomes "OTHER": a label value per made-up method would grow forever.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Readiness(BaseModel):
    ready: bool
    database: str
    nats: str
    requires_nats: bool


@dataclass(frozen=True)
class ConsumerSample:
    """A durable consumer's backlog as the server reported it (`consumer_info`)."""

    pending: int
    ack_pending: int
    redelivered: int
    sampled_at: datetime


@dataclass
class Observability:
    """One app's registry and the consumer samples its collectors read."""

    registry: CollectorRegistry
    consumers: dict[tuple[str, str], ConsumerSample] = field(default_factory=dict)

    async def sample_consumers(
        self, js: JetStreamContext, consumers: list[tuple[str, ConsumerConfig]]
    ) -> None:
        """Ask the server every few seconds for the backlog of each durable consumer, given
        as the (stream, config) pair it binds with.

        The server's count, unlike the last message's `num_pending`, keeps growing while
        the consumer is stuck, which is when lag matters. A failed sample keeps the last
        value; `ctta_consumer_sampled_timestamp_seconds` shows its age.
        """
        while True:
            raise_if_cancelled()
            for stream, config in consumers:
                durable = config.durable_name
                assert durable, "only durable consumers have a backlog to watch"
                try:
                    info = await js.consumer_info(stream, durable, timeout=2)
                except PublishError as exc:
                    log.debug("consumer %s/%s not sampled: %r", stream, durable, exc)
                    continue
                self.consumers[(stream, durable)] = ConsumerSample(
                    pending=info.num_pending or 0,
                    ack_pending=info.num_ack_pending or 0,
                    redelivered=info.num_redelivered or 0,
                    sampled_at=datetime.now(UTC),
                )
            await asyncio.sleep(CONSUMER_SAMPLE_SECONDS)


def install(app: FastAPI, *, requires_nats: bool) -> Observability:
    """Add `/metrics`, `/readyz`, HTTP request metrics and the shared collectors to an app.

    Call it in the app factory (middleware cannot be added once the app serves). The
    result is also kept as `app.state.observability`, where the app registers its own
    collectors and its lifespan finds `sample_consumers`.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(ServiceCollector(app.state))
    observability = Observability(registry)
    registry.register(ConsumerCollector(observability.consumers))
    app.state.observability = observability
    app.add_middleware(HttpMetrics, instruments=HttpInstruments.create(registry))

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await asyncio.to_thread(encoder, registry)  # collectors run SQL
        return Response(body, media_type=content_type)

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness: database and NATS state; 503 when not ready",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready"}},
    )
    async def readyz() -> JSONResponse:
        readiness = await check_readiness(app.state, requires_nats=requires_nats)
        return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)

    return observability


async def check_readiness(state: State, *, requires_nats: bool) -> Readiness:
    """Whether to send this service traffic.

    A node is ready when its database answers: writes go to the outbox and wait there
    while NATS is down, so a NATS outage must not take the centre's API out of service.
    The hub is ready when its database answers and it has joined NATS once (its state
    left "connecting"): before that its index may be empty and its matcher idle, so a
    fresh hub would serve a federation that looks empty. A later NATS outage leaves it
    ready — search keeps working from the index, and a restart would not help. Liveness
    (`/healthz`) touches neither, so neither outage gets a healthy process restarted.
    """
    nats = getattr(state, "nats_state", "starting")
    engine: Engine | None = getattr(state, "engine", None)
    if engine is None:
        database = "starting"
    else:
        try:
            await asyncio.wait_for(asyncio.to_thread(_ping, engine), DATABASE_TIMEOUT_SECONDS)
            database = "ok"
        except TimeoutError:
            database = "error: TimeoutError"
        except (SQLAlchemyError, OSError) as exc:
            database = f"error: {type(exc).__name__}"
            log.warning("readiness: database unreachable: %s", exc)
    nats_ok = not requires_nats or nats not in ("starting", "connecting")
    return Readiness(
        ready=database == "ok" and nats_ok,
        database=database,
        nats=nats,
        requires_nats=requires_nats,
    )


def _ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def read_database(state: State, read: Callable[[Session], T]) -> T | None:
    """Run a scrape-time query; None when the database is not there (the scrape goes on)."""
    engine: Engine | None = getattr(state, "engine", None)
    if engine is None:
        return None
    try:
        with Session(engine) as session:
            return read(session)
    except SQLAlchemyError as exc:
        log.debug("metrics: database read failed: %r", exc)
        return None


def timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def gauge(name: str, documentation: str, value: float | None) -> Iterator[Metric]:
    """A label-less gauge, or nothing when the value is unknown (absent beats a false 0)."""
    if value is not None:
        yield GaugeMetricFamily(name, documentation, value=value)


def counter(name: str, documentation: str, value: float) -> Metric:
    return CounterMetricFamily(name, documentation, value=value)


@dataclass(frozen=True)
class _ServiceReads:
    backlog: int
    oldest_unsent: datetime | None
    dead_letters: dict[tuple[str, str], int]


def _service_reads(session: Session) -> _ServiceReads:
    oldest = session.exec(
        select(OutboxEvent.created_at)
        .where(col(OutboxEvent.published_at).is_(None))
        .order_by(col(OutboxEvent.seq))
        .limit(1)
    ).first()
    return _ServiceReads(outbox.backlog(session), oldest, deadletters.counts_by_reason(session))


class ServiceCollector:
    """What node and hub share: database and NATS state, outbox relay, dead letters, tasks."""

    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        reads = read_database(self.state, _service_reads)
        yield GaugeMetricFamily(
            "ctta_database_up",
            "1 when this scrape could read the database",
            value=float(reads is not None),
        )
        nats = GaugeMetricFamily(
            "ctta_nats_state", "1 for the current NATS connection state", labels=["state"]
        )
        current = getattr(self.state, "nats_state", "connecting")
        for name in NATS_STATES:
            nats.add_metric([name], float(name == current))
        yield nats
        if reads is not None:
            yield GaugeMetricFamily(
                "ctta_outbox_backlog", "Events written but not yet published", value=reads.backlog
            )
            age = (
                (datetime.now(UTC) - reads.oldest_unsent).total_seconds()
                if reads.oldest_unsent
                else 0.0
            )
            yield GaugeMetricFamily(
                "ctta_outbox_oldest_unsent_age_seconds",
                "Age of the oldest unpublished event (0 when none waits)",
                value=age,
            )
            letters = GaugeMetricFamily(
                "ctta_dead_letters",
                "Refused messages in the dead-letter table, by centre and reason class",
                labels=["centre", "reason"],
            )
            for (centre, reason), count in sorted(reads.dead_letters.items()):
                letters.add_metric([centre, reason], count)
            yield letters
        relay = getattr(self.state, "relay_state", None)
        if relay is not None:
            yield counter(
                "ctta_outbox_published", "Events the relay published since start", relay.published
            )
            yield counter(
                "ctta_outbox_publish_errors",
                "Failed publish attempts since start (each is retried)",
                relay.failures,
            )
            yield from gauge(
                "ctta_outbox_last_publish_timestamp_seconds",
                "When the relay last had an event acknowledged",
                timestamp(relay.last_published_at),
            )
        restarts = CounterMetricFamily(
            "ctta_task_restarts", "Background loops restarted after an error", labels=["task"]
        )
        for task, count in sorted(getattr(self.state, "task_failures", {}).items()):
            restarts.add_metric([task], count)
        yield restarts


class ConsumerCollector:
    """Backlog of the durable consumers the app samples (see `Observability.sample_consumers`)."""

    def __init__(self, samples: dict[tuple[str, str], ConsumerSample]) -> None:
        self.samples = samples

    def collect(self) -> Iterator[Metric]:
        labels = ["stream", "consumer"]
        families = {
            "pending": GaugeMetricFamily(
                "ctta_consumer_pending_messages", "Messages not yet delivered", labels=labels
            ),
            "ack_pending": GaugeMetricFamily(
                "ctta_consumer_ack_pending_messages",
                "Messages delivered, not yet acknowledged",
                labels=labels,
            ),
            "redelivered": GaugeMetricFamily(
                "ctta_consumer_redelivered_messages",
                "Messages delivered more than once and still unacknowledged",
                labels=labels,
            ),
        }
        sampled = GaugeMetricFamily(
            "ctta_consumer_sampled_timestamp_seconds", "When the backlog was read", labels=labels
        )
        for key, sample in sorted(self.samples.items()):
            for attribute, family in families.items():
                family.add_metric(list(key), getattr(sample, attribute))
            sampled.add_metric(list(key), sample.sampled_at.timestamp())
        yield from families.values()
        yield sampled


@dataclass(frozen=True)
class HttpInstruments:
    requests: Counter
    duration: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> HttpInstruments:
        return cls(
            Counter(
                "ctta_http_requests",
                "HTTP requests by route template, method and status",
                ["route", "method", "status"],
                registry=registry,
            ),
            Histogram(
                "ctta_http_request_duration_seconds",
                "HTTP request latency by route template and method",
                ["route", "method"],
                registry=registry,
            ),
        )


class HttpMetrics:
    """ASGI middleware: count and time requests by route *template* (`/records/{id}`),
    so ids never become labels; paths no route matched share the label "unmatched"."""

    def __init__(self, app: ASGIApp, instruments: HttpInstruments) -> None:
        self.app = app
        self.instruments = instruments
        self._templates: dict[int, str] | None = None

    def template(self, scope: Scope) -> str:
        """The full path template of the matched route, router prefixes included.

        FastAPI leaves the route of an included router in `scope["route"]` with only its
        own path (`/records/{record_id}`); `iter_route_contexts` knows the prefixed one.
        """
        route = scope.get("route")
        if route is None:
            return "unmatched"
        if self._templates is None:
            self._templates = {
                id(context.original_route): context.path_format or ""
                for context in iter_route_contexts(scope["app"].routes)
            }
        return self._templates.get(id(route)) or getattr(route, "path", None) or "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self.template(scope)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            self.instruments.requests.labels(route, method, str(status)).inc()
            self.instruments.duration.labels(route, method).observe(time.perf_counter() - started)
