"""Metrics, readiness and structured logs, against real nats-server, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import psycopg
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from ulid import ULID

from ctta.deploy.local import serving
from ctta.deploy.natsserver import NatsServer
from ctta.hub.app import create_app as create_hub
from ctta.node.app import MIGRATIONS as NODE_MIGRATIONS
from ctta.protocol import backbone
from ctta.protocol.envelope import build_event
from ctta.protocol.signing import SigningKey
from ctta.protocol.subjects import record_subject
from ctta.protocol.taxonomy import RecordKind
from ctta.server import metrics
from ctta.server.db import create_db_engine, migrate, session_scope
from ctta.server.logs import JsonFormatter
from ctta.server.outbox import service as outbox
from ctta.server.outbox.relay import OutboxRelay
from tests.conftest import PG_ADMIN
from tests.support import (
    STAFF,
    Federation,
    achievement_body,
    bus_battery_offer,
    demand_body,
    eventually,
    provision,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_hub_metrics_count_ingest_dead_letters_and_requests(
    nats_server: NatsServer,
    node_settings,
    hub_settings,
    database_url: str,
    federation_keys: dict[str, SigningKey],
) -> None:
    hub = hub_settings(nats_server.url, database_url).model_copy(update={"matching": False})
    async with Federation.start(
        nats_server, [node_settings("eastern", nats_server.url)], hub
    ) as federation:
        created = (
            await federation.nodes["eastern"].post(
                "/api/v1/achievements", json=achievement_body(), headers=STAFF
            )
        ).json()
        await eventually(lambda: _indexed(federation, created["id"]))
        published = (
            await federation.hub.get(f"/api/v1/records/eastern/achievement/{created['id']}")
        ).json()
        subject = record_subject("eastern", RecordKind.ACHIEVEMENT, created["id"])
        forged = {**published, "title": {"en": "Forged"}, "version": 2}

        def event(key: SigningKey, data: dict):
            return build_event(
                nats_subject=subject,
                centre="eastern",
                event_type="org.ctta.achievement.upserted.v1",
                ce_subject=f"achievement/{created['id']}",
                version=2,
                data=data,
                dataschema="http://hub/api/v1/schemas/achievement.json",
                signing_key=key,
            )

        rogue = event(SigningKey.generate("eastern#rogue"), forged)
        tampered = event(federation_keys["eastern"], forged)
        bad_schema = event(federation_keys["eastern"], {**forged, "trl": 42})
        attacks = [
            (rogue.headers, rogue.body),
            (tampered.headers, json.dumps({**forged, "title": {"en": "Other"}}).encode()),
            (bad_schema.headers, bad_schema.body),
        ]
        nc = await nats.connect(nats_server.url)
        for count, (headers, body) in enumerate(attacks, start=1):  # one at a time, as in
            await nc.jetstream().publish(subject, body, headers=headers)  # test_federation

            async def dead(count: int = count) -> bool:
                return federation.hub_app.state.ingest.dead_letters == count

            await eventually(dead)
        await nc.close()

        async def scraped() -> Samples | None:
            samples = await scrape(federation.hub)
            pending = value(
                samples,
                "ctta_consumer_pending_messages",
                stream="CTTA_EVENTS",
                consumer="hub-indexer",
            )
            alive = value(samples, "ctta_hub_centre_alive", centre="eastern")
            # The backlog is the last heartbeat's: one sent before the relay published
            # still says 1 until the next beat.
            backlog = value(samples, "ctta_hub_centre_outbox_backlog", centre="eastern")
            return samples if pending == 0 and alive == 1 and backlog == 0 else None

        samples = await eventually(scraped, timeout=15)
        assert value(samples, "ctta_hub_ingested_events_total") == 1
        assert value(samples, "ctta_hub_ingest_dead_lettered_total") == 3
        for reason in ("provenance", "signature", "schema"):
            assert value(samples, "ctta_dead_letters", centre="eastern", reason=reason) == 1
        assert value(samples, "ctta_database_up") == 1
        assert value(samples, "ctta_nats_state", state="connected") == 1
        assert value(samples, "ctta_nats_state", state="disconnected") == 0
        assert value(samples, "ctta_hub_centre_alive", centre="ocean") == 0
        assert value(samples, "ctta_hub_centre_outbox_backlog", centre="eastern") == 0
        assert value(samples, "ctta_hub_centre_event_lag_seconds", centre="eastern") is not None
        assert value(samples, "ctta_outbox_backlog") == 0
        route = "/api/v1/records/{centre}/{kind}/{record_id}"
        assert (
            value(samples, "ctta_http_requests_total", route=route, method="GET", status="200") == 1
        ), "requests are labelled by route template, never by id"
        assert not any(created["id"] in str(labels) for _, labels in samples)
        assert (
            value(samples, "ctta_http_request_duration_seconds_count", route=route, method="GET")
            == 1
        )
        await federation.hub.get("/no/such/path")
        samples = await scrape(federation.hub)
        assert (
            value(
                samples, "ctta_http_requests_total", route="unmatched", method="GET", status="404"
            )
            == 1
        )
        paths = (await federation.hub.get("/openapi.json")).json()["paths"]
        assert "/readyz" in paths and "/metrics" not in paths
        health = (await federation.hub.get("/healthz")).json()
        assert health["status"] == "ok" and health["nats"] == "connected"


async def test_hub_metrics_count_matches_by_stage(federation: Federation) -> None:
    await federation.nodes["eastern"].post(
        "/api/v1/achievements",
        headers=STAFF,
        json=bus_battery_offer(),
    )
    await federation.nodes["southern"].post("/api/v1/demands", headers=STAFF, json=demand_body())
    stages = {"status": "proposed", "demand_stage": "proposed", "achievement_stage": "proposed"}

    async def proposed() -> Samples | None:
        samples = await scrape(federation.hub)
        return samples if value(samples, "ctta_hub_matches", **stages) == 1 else None

    samples = await eventually(proposed, timeout=20)
    assert value(samples, "ctta_hub_matcher_routed_total") == 1
    [match] = (await federation.hub.get("/api/v1/matches", headers=STAFF)).json()

    async def in_eastern_inbox() -> bool:
        url = f"/api/v1/matches/{match['id']}"
        return (await federation.nodes["eastern"].get(url, headers=STAFF)).status_code == 200

    await eventually(in_eastern_inbox)  # routed by the hub, then delivered to the node
    response = await federation.nodes["eastern"].post(
        f"/api/v1/matches/{match['id']}/response", headers=STAFF, json={"stage": "accepted"}
    )
    assert response.status_code == 200, response.text
    accepted = {**stages, "achievement_stage": "accepted"}

    async def moved() -> Samples | None:
        samples = await scrape(federation.hub)
        return samples if value(samples, "ctta_hub_matches", **accepted) == 1 else None

    samples = await eventually(moved)
    assert value(samples, "ctta_hub_matches", **stages) is None
    assert (value(samples, "ctta_outbox_published_total") or 0) >= 2, "routes to both centres"


async def _indexed(federation: Federation, record_id: str) -> bool:
    return record_id in await federation.search_ids()


@pytest.mark.postgres
async def test_hub_readiness_tells_nats_and_database_apart(
    nats_server: NatsServer, hub_settings, postgres_database
) -> None:
    url = postgres_database()
    nats_server.stop()
    hub_app = create_hub(hub_settings(nats_server.url, url).model_copy(update={"matching": False}))
    async with serving(hub_app) as hub:
        first = await hub.get("/readyz")
        assert first.status_code == 503, "a hub that never joined NATS is not ready"
        assert first.json() == {
            "ready": False,
            "database": "ok",
            "nats": "connecting",
            "requires_nats": True,
        }
        nats_server.start()
        await provision(nats_server.url)
        await eventually(lambda: _ready(hub, nats="connected"), timeout=15)

        nats_server.stop()
        await eventually(lambda: _ready(hub, nats="disconnected"), timeout=15)
        samples = await scrape(hub)
        assert value(samples, "ctta_nats_state", state="disconnected") == 1
        nats_server.start()
        await eventually(lambda: _ready(hub, nats="connected"), timeout=15)

        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        response = await hub.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {
            "ready": False,
            "database": "error: OperationalError",
            "nats": "connected",
            "requires_nats": True,
        }
        samples = await scrape(hub)
        assert value(samples, "ctta_database_up") == 0, "the scrape survives a lost database"
        assert value(samples, "ctta_nats_state", state="connected") == 1
        assert (await hub.get("/healthz")).status_code == 200, "liveness ignores the database"


async def _ready(hub: httpx.AsyncClient, *, nats: str) -> bool:
    response = await hub.get("/readyz")
    body = response.json()
    return response.status_code == 200 and body["database"] == "ok" and body["nats"] == nats


@pytest.fixture
async def outbox_service(
    nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[tuple[FastAPI, OutboxRelay]]:
    """A node-shaped app: its store, outbox relay and NATS state, with the installers only.

    node/app.py wires the same pieces; this keeps the node side testable on its own.
    """
    await provision(nats_server.url)
    engine = create_db_engine(f"sqlite:///{tmp_path / 'node.db'}")
    await asyncio.to_thread(migrate, engine, NODE_MIGRATIONS)
    app = FastAPI()
    metrics.install(app, requires_nats=False)
    relay = OutboxRelay(engine, max_backoff=0.2)
    app.state.engine, app.state.relay_state, app.state.nats_state = (
        engine,
        relay.state,
        "connecting",
    )

    def on_state(state: str) -> None:
        app.state.nats_state = state

    nc = await backbone.connect(nats_server.url, "observed-node", on_state_change=on_state)
    app.state.nats_state = "connected"  # as node/app.py does once connect returns
    running = asyncio.create_task(relay.run(nc.jetstream()))
    yield app, relay
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await nc.close()
    engine.dispose()


def _enqueue(app: FastAPI, relay: OutboxRelay, key: SigningKey) -> None:
    record_id = str(ULID())
    event = build_event(
        nats_subject=record_subject("eastern", RecordKind.ACHIEVEMENT, record_id),
        centre="eastern",
        event_type="org.ctta.achievement.upserted.v1",
        ce_subject=f"achievement/{record_id}",
        version=1,
        data={"id": record_id},
        dataschema="http://hub/api/v1/schemas/achievement.json",
        signing_key=key,
    )
    with session_scope(app.state.engine, write=True) as session:
        outbox.enqueue(session, event, kind="achievement", record_id=record_id, version=1)
    relay.wake()


async def test_node_side_publish_errors_rise_while_nats_is_down_and_readiness_holds(
    outbox_service: tuple[FastAPI, OutboxRelay],
    nats_server: NatsServer,
    federation_keys: dict[str, SigningKey],
) -> None:
    app, relay = outbox_service
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("ctta").addHandler(handler)
    try:
        async with serving(app) as node:
            _enqueue(app, relay, federation_keys["eastern"])
            await eventually(lambda: _metric(node, "ctta_outbox_published_total", 1))
            assert (await node.get("/readyz")).json()["nats"] == "connected"

            nats_server.stop()
            _enqueue(app, relay, federation_keys["eastern"])
            await eventually(lambda: _metric(node, "ctta_outbox_publish_errors_total", 1), 20)
            samples = await scrape(node)
            assert value(samples, "ctta_outbox_backlog") == 1
            assert (value(samples, "ctta_outbox_oldest_unsent_age_seconds") or 0) > 0
            assert value(samples, "ctta_nats_state", state="connected") == 0
            ready = await node.get("/readyz")
            assert ready.status_code == 200, "a node takes writes into its outbox without NATS"
            assert ready.json()["nats"] != "connected" and ready.json()["database"] == "ok"

            nats_server.start()
            await eventually(lambda: _metric(node, "ctta_outbox_published_total", 2), 20)
            samples = await scrape(node)
            assert value(samples, "ctta_outbox_backlog") == 0
            assert value(samples, "ctta_outbox_oldest_unsent_age_seconds") == 0
    finally:
        logging.getLogger("ctta").removeHandler(handler)
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    failures = [r for r in records if r["logger"] == "ctta.server.outbox.relay"]
    assert failures, records
    assert {"time", "level", "logger", "message", "event_id", "subject", "error"} <= set(
        failures[0]
    )
    assert failures[0]["level"] == "WARNING" and "retrying" in failures[0]["message"]


async def _metric(client: httpx.AsyncClient, name: str, at_least: float) -> bool:
    return (value(await scrape(client), name) or 0) >= at_least


def test_json_log_lines_from_the_environment_setting() -> None:
    program = (
        "import logging\n"
        "from ctta.server.logs import configure\n"
        "configure('INFO')\n"
        "log = logging.getLogger('ctta.example')\n"
        "log.info('hub serving %d centres', 11, extra={'centre': 'eastern'})\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    log.exception('boom')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, "CTTA_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    first, second = (json.loads(line) for line in result.stderr.splitlines())
    assert first["message"] == "hub serving 11 centres" and first["centre"] == "eastern"
    assert (first["level"], first["logger"]) == ("INFO", "ctta.example")
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ZeroDivisionError" in second["exception"]
    plain = subprocess.run(
        [sys.executable, "-c", program],
        env={k: v for k, v in os.environ.items() if k != "CTTA_LOG_FORMAT"},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert "INFO    ctta.example: hub serving 11 centres" in plain.stderr


async def test_node_serves_metrics_and_readiness(federation: Federation) -> None:
    node = federation.nodes["eastern"]
    await node.post("/api/v1/achievements", json=achievement_body(), headers=STAFF)
    inbox = {"stream": "CTTA_ROUTES", "consumer": "inbox-eastern"}

    async def published() -> Samples | None:
        samples = await scrape(node)
        done = value(samples, "ctta_outbox_published_total") == 1 and (
            value(samples, "ctta_consumer_pending_messages", **inbox) == 0
        )
        return samples if done else None

    samples = await eventually(published, timeout=15)
    assert value(samples, "ctta_outbox_backlog") == 0
    assert value(samples, "ctta_nats_state", state="connected") == 1
    assert (
        value(
            samples,
            "ctta_http_requests_total",
            route="/api/v1/achievements",
            method="POST",
            status="201",
        )
        == 1
    )
    ready = await node.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {
        "ready": True,
        "database": "ok",
        "nats": "connected",
        "requires_nats": False,
    }
