"""The node application factory: `create_app(settings)`.

The lifespan owns everything with a life: the database engine, the NATS connection,
the outbox relay and the heartbeat. NATS is joined in the background, so the node
starts, serves and accepts writes while the backbone is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from nats.aio.client import Client as NatsClient

from ctta.node import inbox
from ctta.node.audit.views import router as audit_router
from ctta.node.federation import service as federation
from ctta.node.federation.views import router as federation_router
from ctta.node.matches.views import router as matches_router
from ctta.node.publisher import EventTooLarge, Publisher
from ctta.node.records.views import records_router
from ctta.node.searches.views import router as searches_router
from ctta.node.settings import NodeSettings
from ctta.node.tokens.views import router as tokens_router
from ctta.protocol import backbone
from ctta.protocol.heartbeat import Heartbeat
from ctta.protocol.subjects import heartbeat_subject
from ctta.protocol.taxonomy import CENTRES_BY_ID, RecordKind
from ctta.server import errors, metrics
from ctta.server.db import create_db_engine, migrate, session_scope
from ctta.server.limits import BodySizeLimit, WriteRateLimit
from ctta.server.openapi import operation_id
from ctta.server.outbox.relay import OutboxRelay
from ctta.server.tasks import stop, supervise

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
API_PREFIX = "/api/v1"


def create_app(settings: NodeSettings) -> FastAPI:
    centre = CENTRES_BY_ID.get(settings.centre)
    title = f"CTTA node: {centre.name_en if centre else settings.centre}"

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_db_engine(
            settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
        )
        await asyncio.to_thread(migrate, engine, MIGRATIONS)
        relay = OutboxRelay(engine, settings.relay_batch, settings.relay_max_backoff_seconds)
        app.state.engine = engine
        app.state.relay_state = relay.state
        app.state.nats_state = "connecting"
        app.state.task_failures = {}
        app.state.published = federation.PublishedState()
        app.state.publisher = Publisher(
            centre=settings.centre,
            signing_key=settings.signing_key(),
            schema_base_url=settings.hub_url,
            wake_relay=relay.wake,
        )
        federate = asyncio.create_task(
            _federate(app, settings, relay), name=f"federate-{settings.centre}"
        )
        log.info("node %s serving; database %s", settings.centre, engine.url.render_as_string())
        try:
            yield
        finally:
            await stop(federate, federate.get_name())
            engine.dispose()

    app = FastAPI(
        title=title,
        version="1.0",
        description="A centre's node of the CTTA backbone: it owns the centre's records and "
        "publishes their public projection to the federation.\n\n"
        "Public records read openly; `alliance` records need any token of this node, "
        "`private` records and private detail a staff token. Request bodies above "
        f"{settings.max_request_bytes} bytes get 413; writes beyond "
        f"{settings.write_rate_per_second:g}/s (burst {settings.write_burst}) per token get "
        "429 with `Retry-After`.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.settings_principals = settings.settings_principals()
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(
        WriteRateLimit, rate=settings.write_rate_per_second, burst=settings.write_burst
    )
    app.add_exception_handler(EventTooLarge, _event_too_large)
    errors.install(app)
    for kind in RecordKind:
        app.include_router(records_router(kind), prefix=API_PREFIX)
    app.include_router(matches_router, prefix=API_PREFIX)
    app.include_router(searches_router, prefix=API_PREFIX)
    app.include_router(federation_router, prefix=API_PREFIX)
    app.include_router(tokens_router, prefix=API_PREFIX)
    app.include_router(audit_router, prefix=API_PREFIX)
    # After the routers and the limits, so 413 and 429 answers are counted too.
    metrics.install(app, requires_nats=False)

    @app.get("/healthz", tags=["health"], summary="Liveness, with the NATS state")
    def healthz() -> dict[str, str]:
        """Cheap: memory only, no database; `/readyz` checks the database."""
        return {"status": "ok", "centre": settings.centre, "nats": app.state.nats_state}

    return app


async def _event_too_large(_request: Request, exc: Exception) -> JSONResponse:
    """The write was rolled back with its session; say why instead of a 500."""
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_413_CONTENT_TOO_LARGE)


async def _federate(app: FastAPI, settings: NodeSettings, relay: OutboxRelay) -> None:
    """Join the backbone, then run the relay and the heartbeat until cancelled."""

    def on_state(state: str) -> None:
        app.state.nats_state = state

    nc = await backbone.connect(
        settings.nats_url,
        f"node-{settings.centre}",
        on_state_change=on_state,
        nkey_seed=settings.nats_nkey_seed.get_secret_value() or None,
    )
    app.state.nats_state = "connected" if nc.is_connected else "connecting"
    try:
        js, failures = nc.jetstream(), app.state.task_failures
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(supervise("outbox relay", lambda: relay.run(js), failures))
            tasks.create_task(
                supervise("heartbeat", lambda: _heartbeat(app, settings, nc), failures)
            )
            tasks.create_task(
                supervise(
                    "inbox",
                    lambda: inbox.run(js, app.state.engine, settings.centre, app.state.publisher),
                    failures,
                )
            )
            consumers = [(backbone.ROUTES_STREAM, inbox.inbox_consumer_config(settings.centre))]
            sample = app.state.observability.sample_consumers
            tasks.create_task(supervise("consumer lag", lambda: sample(js, consumers), failures))
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2)


async def _heartbeat(app: FastAPI, settings: NodeSettings, nc: NatsClient) -> None:
    while True:
        if nc.is_connected:
            beat = await asyncio.to_thread(_make_heartbeat, app, settings)
            try:
                await nc.publish(
                    heartbeat_subject(settings.centre), beat.model_dump_json().encode()
                )
            except backbone.PublishError as exc:
                log.debug("heartbeat not sent: %s", exc)
        await asyncio.sleep(settings.heartbeat_seconds)


def _make_heartbeat(app: FastAPI, settings: NodeSettings) -> Heartbeat:
    with session_scope(app.state.engine) as session:
        return federation.heartbeat(
            session, settings.centre, settings.public_url, app.state.published
        )
