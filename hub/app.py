"""The hub application factory: `create_app(settings)`.

The lifespan runs the indexer (durable pull consumer of CTTA_EVENTS) and the heartbeat
listener beside the API; both join NATS in the background so the API and search keep
serving from the index while the backbone is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import text

from ctta.hub.centres import heartbeats
from ctta.hub.centres.views import router as centres_router
from ctta.hub.index.ingest import Indexer
from ctta.hub.index.views import router as index_router
from ctta.hub.matching.encoder import UseEncoder
from ctta.hub.matching.views import router as matches_router
from ctta.hub.matching.worker import Change, Matcher
from ctta.hub.settings import HubSettings
from ctta.hub.webhooks.delivery import Deliverer
from ctta.hub.webhooks.views import router as webhooks_router
from ctta.protocol import backbone
from ctta.protocol.registry import FederationRegistry
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

    @app.get("/healthz", tags=["health"], summary="Database, NATS and ingest state")
    def healthz() -> dict[str, object]:
        with app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        ingest = app.state.ingest
        return {
            "status": "ok",
            "database": "ok",
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

    nc = await backbone.connect(settings.nats_url, "hub", on_state_change=on_state)
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
            deliverer = Deliverer(app.state.engine, max_attempts=settings.webhook_max_attempts)
            tasks.create_task(supervise("webhooks", deliverer.run, failures))
            if matcher is not None:
                tasks.create_task(supervise("matcher", lambda: matcher.run(backlog), failures))
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2)
