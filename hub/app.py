"""The hub application factory: `create_app(settings)`.

The lifespan runs the indexer (durable pull consumer of CTTA_EVENTS) and the heartbeat
listener beside the API; both join NATS in the background so the API and search keep
serving from the index while the backbone is down. `/metrics` adds the hub's own view
(ingest, matches, centres, webhooks) to what every service reports (ctta.server.metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from sqlalchemy import func
from sqlmodel import Session, select
from starlette.datastructures import State

from ctta.hub.centres import heartbeats
from ctta.hub.centres.anti_entropy import run_anti_entropy
from ctta.hub.centres.models import CentreHeartbeat
from ctta.hub.centres.views import router as centres_router
from ctta.hub.index.ingest import Indexer, IngestState
from ctta.hub.index.views import router as index_router
from ctta.hub.matching.encoder import UseEncoder
from ctta.hub.matching.models import Match
from ctta.hub.matching.views import router as matches_router
from ctta.hub.matching.worker import Change, Matcher
from ctta.hub.settings import HubSettings
from ctta.hub.webhooks.delivery import Deliverer
from ctta.hub.webhooks.models import Delivery
from ctta.hub.webhooks.views import router as webhooks_router
from ctta.protocol import backbone
from ctta.protocol.registry import FederationRegistry
from ctta.server import errors, metrics
from ctta.server.db import create_db_engine, migrate
from ctta.server.openapi import operation_id
from ctta.server.outbox.relay import OutboxRelay
from ctta.server.tasks import stop, supervise

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
API_PREFIX = "/api/v1"


def create_app(settings: HubSettings) -> FastAPI:
    registry = FederationRegistry.load(settings.registry_file)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_db_engine(
            settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        await asyncio.to_thread(migrate, engine, MIGRATIONS)
        relay = OutboxRelay(engine)
        matcher = (
            Matcher(
                engine,
                UseEncoder(),
                wake_relay=relay.wake,
                threshold=settings.match_threshold,
                per_record=settings.matches_per_record,
                ann_threshold=settings.match_ann_threshold,
            )
            if settings.matching
            else None
        )
        if matcher is not None:
            # Load the encoder now (about a second), not in the middle of the first events.
            await asyncio.to_thread(matcher.encoder.encode, ["warm-up"])
        backlog = await asyncio.to_thread(matcher.load) if matcher else []
        indexer = Indexer(
            engine,
            registry,
            settings.consumer,
            settings.ingest_batch,
            on_changes=lambda changes: _after_batch(changes, matcher, relay),
        )
        app.state.engine = engine
        app.state.ingest = indexer.state
        app.state.matcher = matcher
        app.state.relay_state = relay.state
        app.state.nats_state = "connecting"
        app.state.task_failures = {}
        federate = asyncio.create_task(
            _federate(app, settings, indexer, relay, matcher, backlog), name="hub-federate"
        )
        log.info(
            "hub serving %d centres; database %s",
            len(registry.centres),
            engine.url.render_as_string(),
        )
        try:
            yield
        finally:
            await stop(federate, federate.get_name())
            if matcher is not None:
                matcher.close()
            engine.dispose()

    app = FastAPI(
        title="CTTA federation hub",
        version="1.0",
        description="Indexes every centre's published records and serves federated search.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.include_router(index_router, prefix=API_PREFIX)
    app.include_router(centres_router, prefix=API_PREFIX)
    app.include_router(matches_router, prefix=API_PREFIX)
    app.include_router(webhooks_router, prefix=API_PREFIX)
    errors.install(app)
    observability = metrics.install(app, requires_nats=True)
    observability.registry.register(HubCollector(app.state))

    @app.get("/healthz", tags=["health"], summary="Liveness, with NATS and ingest state")
    def healthz() -> dict[str, object]:
        """Cheap: memory only, no database; `/readyz` checks the database."""
        ingest = app.state.ingest
        return {
            "status": "ok",
            "nats": app.state.nats_state,
            "indexed": ingest.indexed,
            "dead_letters": ingest.dead_letters,
            "last_error": ingest.last_error,
            "task_restarts": app.state.task_failures,
        }

    return app


def _after_batch(changes: list[Change], matcher: Matcher | None, relay: OutboxRelay) -> None:
    """Hand the batch's changes to the matcher and publish any alerts it queued at once."""
    if matcher is not None:
        matcher.notify(changes)
    relay.wake()


async def _federate(
    app: FastAPI,
    settings: HubSettings,
    indexer: Indexer,
    relay: OutboxRelay,
    matcher: Matcher | None,
    backlog: list[Change],
) -> None:
    def on_state(state: str) -> None:
        app.state.nats_state = state

    nc = await backbone.connect(
        settings.nats_url,
        "hub",
        on_state_change=on_state,
        nkey_seed=settings.nats_nkey_seed.get_secret_value() or None,
    )
    app.state.nats_state = "connected"
    try:
        js, failures = nc.jetstream(), app.state.task_failures
        engine, registry = app.state.engine, app.state.registry
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(supervise("indexer", lambda: indexer.run(js), failures))
            tasks.create_task(
                supervise("heartbeats", lambda: heartbeats.listen(nc, engine, registry), failures)
            )
            tasks.create_task(supervise("route relay", lambda: relay.run(js), failures))
            tasks.create_task(
                supervise(
                    "anti-entropy",
                    lambda: run_anti_entropy(
                        engine,
                        registry,
                        interval=settings.anti_entropy_seconds,
                        heartbeat_timeout=settings.heartbeat_timeout_seconds,
                        wake_relay=relay.wake,
                    ),
                    failures,
                )
            )
            deliverer = Deliverer(app.state.engine, max_attempts=settings.webhook_max_attempts)
            tasks.create_task(supervise("webhooks", deliverer.run, failures))
            if matcher is not None:
                tasks.create_task(supervise("matcher", lambda: matcher.run(backlog), failures))
            consumers = [
                (backbone.EVENTS_STREAM, backbone.indexer_consumer_config(settings.consumer))
            ]
            sample = app.state.observability.sample_consumers
            tasks.create_task(supervise("consumer lag", lambda: sample(js, consumers), failures))
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2)


@dataclass(frozen=True)
class _HubReads:
    matches: dict[tuple[str, str, str], int]
    deliveries: dict[str, int]
    heartbeats: list[CentreHeartbeat]


def _hub_reads(session: Session) -> _HubReads:
    matches = session.exec(
        select(Match.status, Match.demand_stage, Match.achievement_stage, func.count()).group_by(
            Match.status, Match.demand_stage, Match.achievement_stage
        )
    )
    deliveries = session.exec(select(Delivery.status, func.count()).group_by(Delivery.status))
    return _HubReads(
        {(status, demand, achievement): n for status, demand, achievement, n in matches},
        dict(deliveries.all()),
        list(session.exec(select(CentreHeartbeat))),
    )


class HubCollector:
    """The hub's own metrics, read at scrape time from its state objects and tables."""

    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        ingest = getattr(self.state, "ingest", None)
        if ingest is not None:
            yield from self._ingest(ingest)
        matcher = getattr(self.state, "matcher", None)
        if matcher is not None:
            yield metrics.counter(
                "ctta_hub_matcher_routed", "Proposals routed since start", matcher.state.routed
            )
            yield metrics.counter(
                "ctta_hub_matcher_retracted",
                "Retractions routed since start",
                matcher.state.retracted,
            )
            yield metrics.counter(
                "ctta_hub_matcher_embedded", "Records embedded since start", matcher.state.embedded
            )
            yield GaugeMetricFamily(
                "ctta_hub_matcher_queue", "Changes waiting for the matcher", matcher.state.pending
            )
        reads = metrics.read_database(self.state, _hub_reads)
        if reads is not None:
            yield from self._tables(reads)

    def _ingest(self, ingest: IngestState) -> Iterator[Metric]:
        yield metrics.counter(
            "ctta_hub_ingested_events", "Events applied to the index since start", ingest.indexed
        )
        yield metrics.counter(
            "ctta_hub_ingest_duplicates",
            "Redelivered events recognised and acknowledged again",
            ingest.duplicates,
        )
        yield metrics.counter(
            "ctta_hub_ingest_unchanged",
            "Re-published events of the version the index holds (resync answers)",
            ingest.unchanged,
        )
        yield metrics.counter(
            "ctta_hub_ingest_dead_lettered",
            "Events refused (dead-lettered) since start",
            ingest.dead_letters,
        )
        yield from metrics.gauge(
            "ctta_hub_ingest_last_batch_timestamp_seconds",
            "When the indexer last applied a batch",
            metrics.timestamp(ingest.last_batch_at),
        )
        lag = GaugeMetricFamily(
            "ctta_hub_centre_event_lag_seconds",
            "Event time to indexing, for the newest event of each centre",
            labels=["centre"],
        )
        for centre, seconds in sorted(ingest.lag_seconds.items()):
            lag.add_metric([centre], seconds)
        yield lag
        last = GaugeMetricFamily(
            "ctta_hub_centre_last_event_timestamp_seconds",
            "When the hub last indexed an event of each centre",
            labels=["centre"],
        )
        for centre, when in sorted(ingest.last_event_at.items()):
            last.add_metric([centre], when.timestamp())
        yield last

    def _tables(self, reads: _HubReads) -> Iterator[Metric]:
        matches = GaugeMetricFamily(
            "ctta_hub_matches",
            "Matches by status and each side's stage",
            labels=["status", "demand_stage", "achievement_stage"],
        )
        for labels, count in sorted(reads.matches.items()):
            matches.add_metric(list(labels), count)
        yield matches
        deliveries = GaugeMetricFamily(
            "ctta_hub_webhook_deliveries", "Webhook deliveries by status", labels=["status"]
        )
        for status, count in sorted(reads.deliveries.items()):
            deliveries.add_metric([status], count)
        yield deliveries
        settings: HubSettings = self.state.settings
        cutoff = datetime.now(UTC) - timedelta(seconds=settings.heartbeat_timeout_seconds)
        alive = GaugeMetricFamily(
            "ctta_hub_centre_alive",
            "1 when the centre's node sent a recent heartbeat",
            labels=["centre"],
        )
        backlog = GaugeMetricFamily(
            "ctta_hub_centre_outbox_backlog",
            "Outbox backlog the centre's node last reported",
            labels=["centre"],
        )
        beats = {beat.centre: beat for beat in reads.heartbeats}
        for centre in self.state.registry.centres:
            beat = beats.get(centre.id)
            alive.add_metric([centre.id], float(beat is not None and beat.received_at > cutoff))
            if beat is not None:
                backlog.add_metric([centre.id], beat.outbox_backlog)
        yield alive
        yield backlog
