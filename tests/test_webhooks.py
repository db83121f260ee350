"""Webhooks against a real receiver on loopback, fed by real events through the hub."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from ctta.deploy.natsserver import NatsServer, free_port
from tests.support import STAFF, Federation, achievement_body, demand_body, eventually


class Receiver:
    """An integrator's endpoint that fails the first `failures` calls, then logs what it gets."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.log: list[dict] = []
        self.secret = ""
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            self.calls += 1
            body = await request.body()
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if request.headers["X-CTTA-Signature"] != expected:
                return Response(status_code=401)
            if self.calls <= self.failures:
                return Response(status_code=503)
            self.log.append(json.loads(body))
            return Response(status_code=204)


@contextlib.asynccontextmanager
async def listening(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def webhook_federation(
    nats_server: NatsServer, node_settings, hub_settings
) -> AsyncIterator[Federation]:
    update = {"webhook_allow_http": True, "webhook_max_attempts": 3}
    settings = hub_settings(nats_server.url).model_copy(update=update)
    async with Federation.start(
        nats_server, [node_settings("eastern", nats_server.url)], settings
    ) as running:
        yield running


async def test_a_receiver_that_fails_twice_gets_each_event_once(
    webhook_federation: Federation,
) -> None:
    federation = webhook_federation
    receiver = Receiver(failures=2)  # the hub gives up after 3 attempts here
    async with listening(receiver.app) as base:
        created = await federation.hub.post(
            "/api/v1/webhooks",
            headers=STAFF,
            json={"url": f"{base}/hook", "event_types": ["org.ctta.achievement.upserted.v1"]},
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        receiver.secret = hook["secret"]
        node = federation.nodes["eastern"]
        offer = (
            await node.post("/api/v1/achievements", json=achievement_body(), headers=STAFF)
        ).json()
        await node.post("/api/v1/demands", json=demand_body(), headers=STAFF)  # not subscribed

        async def received() -> bool:
            return len(receiver.log) == 1

        await eventually(received, timeout=20)
        await asyncio.sleep(1.5)  # nothing more arrives
        assert receiver.calls == 3 and len(receiver.log) == 1
        event = receiver.log[0]
        assert (
            event["type"] == "org.ctta.achievement.upserted.v1"
            and event["data"]["id"] == offer["id"]
        )
        assert "private" not in event["data"]
        log = (
            await federation.hub.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=STAFF)
        ).json()
        assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [
            ("delivered", 3, 204)
        ]


async def test_dead_deliveries_can_be_redriven(webhook_federation: Federation) -> None:
    federation = webhook_federation
    receiver = Receiver(failures=10_000)
    async with listening(receiver.app) as base:
        hook = (
            await federation.hub.post(
                "/api/v1/webhooks", headers=STAFF, json={"url": f"{base}/hook"}
            )
        ).json()
        receiver.secret = hook["secret"]
        await federation.nodes["eastern"].post(
            "/api/v1/achievements", json=achievement_body(), headers=STAFF
        )
        url = f"/api/v1/webhooks/{hook['id']}/deliveries"

        async def dead() -> list[dict] | None:
            rows = (await federation.hub.get(url, params={"status": "dead"}, headers=STAFF)).json()
            return rows or None

        [row] = await eventually(dead, timeout=20)
        assert row["attempts"] == 3 and row["last_error"] == "HTTP 503"
        receiver.failures = 0
        redriven = await federation.hub.post(f"{url}/{row['id']}/redrive", headers=STAFF)
        assert redriven.status_code == 200 and redriven.json()["status"] == "pending"

        async def delivered() -> bool:
            return len(receiver.log) == 1

        await eventually(delivered, timeout=20)


async def test_webhooks_need_a_token_and_https(federation: Federation) -> None:
    assert (await federation.hub.get("/api/v1/webhooks")).status_code == 401
    plain = await federation.hub.post(
        "/api/v1/webhooks", headers=STAFF, json={"url": "http://example.com/x"}
    )
    assert plain.status_code == 422 and "https" in plain.text
