"""Hostile HTTP input: schemathesis fuzzes every operation of a node and of the hub.

Both apps run behind real uvicorn servers with their whole lifespan (outbox relay,
indexer, matcher) on a real nats-server; the node on a SQLite file, the hub on SQLite and
on PostgreSQL. Schemathesis runs as its CLI (`schemathesis run`: coverage, fuzzing and
stateful phases, positive and negative data) with a staff / reader token on every
request, so the write and alliance paths are reached. Its pytest integration is not used:
in 4.32.5 it sets `Node._nodeid`, which pytest 9 no longer has. The contract: no request
ends in a server error and every response matches the OpenAPI document. The figures are
in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from ctta.deploy.local import serving
from ctta.deploy.natsserver import NatsServer, free_port
from ctta.hub.app import create_app as create_hub
from ctta.node.app import create_app as create_node
from tests.conftest import STAFF_TOKEN
from tests.support import STAFF, achievement_body, demand_body, provision

log = logging.getLogger(__name__)

MAX_EXAMPLES = 20  # per operation in the fuzzing phase; the other phases add their own cases
SEED = 20261125  # fixed, so a failure found once is found again
CHECKS = "not_a_server_error,response_schema_conformance"


@contextlib.contextmanager
def served(apps: dict[str, FastAPI]) -> Iterator[dict[str, str]]:
    """Serve each app with uvicorn on its own port, from one event loop in a thread.

    The apps need a running loop for their lifespans (relay, indexer, heartbeats) while
    the test itself blocks on the fuzzer, so that loop lives in a thread.
    """
    servers = {
        name: uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="error")
        )
        for name, app in apps.items()
    }

    async def serve_all() -> None:
        await asyncio.gather(*(server.serve() for server in servers.values()))

    thread = threading.Thread(target=asyncio.run, args=(serve_all(),), name="fuzzed-apps")
    thread.start()
    try:
        while not all(server.started for server in servers.values()):
            if not thread.is_alive():
                raise RuntimeError("an app under test failed to start")
            time.sleep(0.02)
        yield {name: f"http://127.0.0.1:{server.config.port}" for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def running(
    nats_server: NatsServer, node_settings, hub_settings
) -> Callable[..., contextlib.AbstractContextManager[dict[str, str]]]:
    """Factory: a node of eastern and the hub (on the given store), both with one
    achievement and one demand indexed, so reads find data."""

    @contextlib.contextmanager
    def start(hub_database_url: str | None = None) -> Iterator[dict[str, str]]:
        asyncio.run(provision(nats_server.url))
        apps = {
            "node": create_node(node_settings("eastern", nats_server.url)),
            "hub": create_hub(hub_settings(nats_server.url, hub_database_url)),
        }
        with served(apps) as urls:
            for path, body in (("achievements", achievement_body()), ("demands", demand_body())):
                response = httpx.post(f"{urls['node']}/api/v1/{path}", json=body, headers=STAFF)
                assert response.status_code == 201, response.text
            deadline = time.monotonic() + 10
            while httpx.get(f"{urls['hub']}/api/v1/search").json()["total"] < 2:
                assert time.monotonic() < deadline, "the seed records never reached the hub"
                time.sleep(0.1)
            yield urls

    return start


def fuzz(base_url: str, workdir: Path) -> dict[str, Any]:
    """Run `schemathesis run` against one app; the JSON run report plus the request count."""
    reports = workdir / "reports"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--no-color",
            "run",
            f"{base_url}/openapi.json",
            f"--header=Authorization: Bearer {STAFF_TOKEN}",
            f"--checks={CHECKS}",
            f"--max-examples={MAX_EXAMPLES}",
            f"--seed={SEED}",
            "--workers=1",
            "--report=json,har",
            f"--report-dir={reports}",
        ],
        cwd=workdir,  # its cache directory goes there, not into the work tree
        capture_output=True,
        text=True,
        timeout=240,
    )
    (report,) = reports.glob("json-*.json")
    (har,) = reports.glob("har-*.json")
    result = json.loads(report.read_text())
    result["requests"] = len(json.loads(har.read_text())["log"]["entries"])
    result["output"] = completed.stdout + completed.stderr
    log.warning(
        "%s: %d requests, %d test cases, %d operations, %.1f s",
        base_url,
        result["requests"],
        result["test_cases"]["generated"],
        result["operations"]["tested"],
        result["running_time"],
    )
    return result


def _assert_clean(result: dict[str, Any]) -> None:
    assert result["failures"] == [] and result["errors"] == [], result["output"]
    assert result["exit_code"] == 0 and result["complete"], result["output"]
    operations = result["operations"]
    assert operations["tested"] == operations["total"], operations
    assert result["requests"] >= MAX_EXAMPLES * operations["total"], "the fuzzer really ran"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_node_survives_fuzzing(running, tmp_path: Path) -> None:
    with running() as urls:
        _assert_clean(fuzz(urls["node"], tmp_path))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hub_survives_fuzzing(running, database_url: str, tmp_path: Path) -> None:
    """On both stores: PostgreSQL refuses values SQLite stores (NUL, over-long text)."""
    with running(database_url) as urls:
        _assert_clean(fuzz(urls["hub"], tmp_path))


HUGE = 2**64  # beyond what SQLite binds (2**63 - 1) and any INTEGER column


async def test_hub_refuses_what_the_fuzzer_broke(
    nats_server: NatsServer, hub_settings, database_url: str
) -> None:
    """Regressions of the server errors fuzzing found: each is now a documented 422."""
    await provision(nats_server.url)
    async with serving(create_hub(hub_settings(nats_server.url, database_url))) as hub:
        webhook = (
            await hub.post("/api/v1/webhooks", json={"url": "https://example.org/h"}, headers=STAFF)
        ).json()["id"]
        refused = [
            await hub.get("/api/v1/dead-letters", params={"before_id": HUGE}, headers=STAFF),
            await hub.get(
                f"/api/v1/webhooks/{webhook}/deliveries", params={"before_id": HUGE}, headers=STAFF
            ),
            await hub.post(f"/api/v1/webhooks/{webhook}/deliveries/{HUGE}/redrive", headers=STAFF),
            await hub.get("/api/v1/matches", params={"offset": HUGE}, headers=STAFF),
            await hub.post(  # longer than the url column: PostgreSQL raised an error
                "/api/v1/webhooks",
                json={"url": "https://example.org/" + "a" * 2000},
                headers=STAFF,
            ),
            await hub.post("/api/v1/webhooks", json={"url": "http://example.org/h"}, headers=STAFF),
            await hub.post("/api/v1/matches/preview", json={"kind": "demand"}, headers=STAFF),
            # NUL reached PostgreSQL, which cannot store or compare it
            await hub.get("/api/v1/dead-letters", params={"centre": "\x00"}, headers=STAFF),
            await hub.get("/api/v1/search", params={"centre": "eastern\x00"}),
            await hub.get(f"/api/v1/records/east%00/achievement/{webhook}"),
            await hub.get("/api/v1/webhooks/a%00/deliveries", headers=STAFF),
        ]
        for response in refused:
            assert response.status_code == 422, (response.request.url, response.text)
            assert isinstance(response.json()["detail"], list), "the documented 422 shape"
        assert (await hub.get(f"/api/v1/webhooks/{webhook}/deliveries", headers=STAFF)).json() == []


async def test_node_refuses_what_the_probes_broke(node_settings, database_url: str) -> None:
    """Regressions of the node's server errors found by hand (huge integers, NUL on
    PostgreSQL) and of both apps' lone-surrogate 500: each is now a documented 422."""
    app = create_node(node_settings("eastern", f"nats://127.0.0.1:{free_port()}", database_url))
    async with serving(app) as node:
        created = await node.post("/api/v1/achievements", json=achievement_body(), headers=STAFF)
        record = created.json()["id"]
        refused = [
            await node.get(
                "/api/v1/federation/dead-letters", params={"before_id": HUGE}, headers=STAFF
            ),
            await node.get("/api/v1/matches", params={"offset": HUGE}, headers=STAFF),
            await node.delete(
                f"/api/v1/achievements/{record}", params={"version": HUGE}, headers=STAFF
            ),
            await node.put(
                f"/api/v1/achievements/{record}",
                json=achievement_body(version=HUGE),
                headers=STAFF,
            ),
            await node.get("/api/v1/achievements/ab%00", headers=STAFF),
            await node.get("/api/v1/matches/ab%00", headers=STAFF),
            await node.get("/api/v1/achievements", params={"q": "a\x00"}),
            await node.get("/api/v1/achievements", params={"cursor": "a\x00"}),
            await node.post(
                "/api/v1/achievements",
                content=b'{"title": {"en": "\\ud800"}}',
                headers={**STAFF, "Content-Type": "application/json"},
            ),
        ]
        for response in refused:
            assert response.status_code == 422, (response.request.url, response.text)
            assert isinstance(response.json()["detail"], list), "the documented 422 shape"
        current = await node.get(f"/api/v1/achievements/{record}", headers=STAFF)
        assert current.json()["version"] == 1
