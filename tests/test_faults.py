"""Faults with real parts: the backbone dies mid-load, the hub rebuilds from the stream."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest
from sqlmodel import Session

from ctta.deploy.local import serving
from ctta.deploy.natsserver import NatsServer, free_port
from ctta.hub.index import service as index
from ctta.hub.index.ingest import rebuild
from ctta.node.app import create_app as create_node
from ctta.protocol.envelope import build_event
from ctta.server.db import create_db_engine
from tests.support import (
    STAFF,
    Federation,
    achievement_body,
    demand_body,
    eventually,
    provision,
)

CENTRES = ("eastern", "southern", "ocean")


async def _manifest_union(federation: Federation) -> set[tuple[str, str, str, int]]:
    union = set()
    for centre, node in federation.nodes.items():
        manifest = (
            await node.get("/api/v1/federation/manifest", params={"include": "records"})
        ).json()
        union |= {(centre, r["kind"], r["id"], r["version"]) for r in manifest["records"]}
    return union


def _index_entries(federation: Federation) -> set[tuple[str, str, str, int]]:
    with Session(federation.hub_app.state.engine) as session:
        return {(c, *entry) for c in CENTRES for entry in index.live_entries(session, c)}


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_nats_killed_during_1000_writes_loses_and_duplicates_nothing(
    nats_server: NatsServer, node_settings, hub_settings
) -> None:
    nodes = [node_settings(c, nats_server.url) for c in CENTRES]
    # The backbone is under test here, not matching: the hub runs without its matcher.
    hub = hub_settings(nats_server.url).model_copy(update={"matching": False})
    async with Federation.start(nats_server, nodes, hub) as federation:
        total = 1000
        counter = itertools.count()
        accepted: list[str] = []
        outage = {"down": 0, "up": 0}

        async def writer() -> None:
            while (n := next(counter)) < total:
                if n == 300:
                    nats_server.kill()
                    outage["down"] = n
                if n == 700:
                    nats_server.start()
                    outage["up"] = n
                centre = CENTRES[n % 3]
                path, body = (
                    ("/api/v1/demands", demand_body(title={"en": f"Demand {n}"}))
                    if n % 4 == 0
                    else ("/api/v1/achievements", achievement_body(title_en=f"Offer {n}"))
                )
                response = await federation.nodes[centre].post(path, json=body, headers=STAFF)
                assert response.status_code == 201, response.text
                accepted.append(response.json()["id"])

        await asyncio.gather(*(writer() for _ in range(8)))
        assert len(accepted) == total and outage == {"down": 300, "up": 700}

        async def converged() -> bool:
            return _index_entries(federation) == await _manifest_union(federation)

        await eventually(converged, timeout=90, interval=0.5)
        entries = _index_entries(federation)
        assert len(entries) == total and {entry[2] for entry in entries} == set(accepted)
        for node in federation.nodes.values():
            status = (await node.get("/api/v1/federation/status")).json()
            assert status["outbox_backlog"] == 0
        ingest = federation.hub_app.state.ingest
        assert ingest.indexed == total and ingest.dead_letters == 0
        nc = await nats.connect(nats_server.url)
        info = await nc.jetstream().stream_info("CTTA_EVENTS")
        await nc.close()
        assert info.state.messages == total, "the stream holds each event once (Nats-Msg-Id dedupe)"


async def test_hub_rebuild_from_the_stream_equals_the_live_index(federation: Federation) -> None:
    eastern, southern = federation.nodes["eastern"], federation.nodes["southern"]
    kept = (
        await eastern.post("/api/v1/achievements", json=achievement_body(), headers=STAFF)
    ).json()
    changed = (await southern.post("/api/v1/demands", json=demand_body(), headers=STAFF)).json()
    dropped = (
        await southern.post("/api/v1/achievements", json=achievement_body(), headers=STAFF)
    ).json()
    await southern.put(
        f"/api/v1/demands/{changed['id']}",
        json=demand_body(version=1, title={"en": "Changed"}),
        headers=STAFF,
    )
    await southern.delete(f"/api/v1/achievements/{dropped['id']}", headers=STAFF)
    expected = {("eastern", "achievement", kept["id"], 1), ("southern", "demand", changed["id"], 2)}

    async def settled() -> bool:
        return (
            _index_entries(federation) == expected and federation.hub_app.state.ingest.indexed == 5
        )

    await eventually(settled)
    before = await federation.search()
    nc = await nats.connect(federation.nats.url)
    try:
        engine = federation.hub_app.state.engine
        applied = await rebuild(engine, federation.hub_app.state.registry, nc.jetstream())
    finally:
        await nc.close()
    assert applied == 3, "newest message of each of the three subjects, the tombstone included"
    assert _index_entries(federation) == expected
    after = await federation.search()
    assert [h["id"] for h in after["hits"]] == [h["id"] for h in before["hits"]]
    assert (await federation.search(q="Changed"))["total"] == 1


@pytest.mark.postgres
async def test_federation_on_postgresql(
    nats_server: NatsServer, node_settings, hub_settings, postgres_database, federation_keys
) -> None:
    """The same flow with the node and the hub on PostgreSQL (tsvector search)."""
    node_settings_pg = node_settings("eastern", nats_server.url, postgres_database())
    async with Federation.start(
        nats_server, [node_settings_pg], hub_settings(nats_server.url, postgres_database())
    ) as federation:
        node = federation.nodes["eastern"]
        created = (
            await node.post("/api/v1/achievements", json=achievement_body(), headers=STAFF)
        ).json()

        async def found(q: str) -> bool:
            return created["id"] in await federation.search_ids(q=q)

        await eventually(lambda: found("电池"))
        assert await found("锂") and await found("lithium battery")
        update = achievement_body(
            version=1, title_zh="钠离子电池正极材料", title_en="Sodium-ion cathode"
        )
        assert (
            await node.put(f"/api/v1/achievements/{created['id']}", json=update, headers=STAFF)
        ).status_code == 200
        await eventually(lambda: found("钠离子"))
        assert not await found("锂电池回收")
        await node.delete(f"/api/v1/achievements/{created['id']}", headers=STAFF)

        async def gone() -> bool:
            return not await found("电池")

        await eventually(gone)

        # Poison for PostgreSQL (a NUL byte, an over-long word): the first is dead-lettered,
        # the second indexed without the word, and nothing behind them waits.
        key = federation_keys["eastern"]
        wire = build_event(
            nats_subject=f"ctta.v1.evt.eastern.achievement.{created['id']}",
            centre="eastern",
            event_type="org.ctta.achievement.upserted.v1",
            ce_subject=f"achievement/{created['id']}",
            version=9,
            data={"x": 1},
            dataschema="http://hub/s.json",
            signing_key=key,
        )
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().publish(wire.subject, b"\x00not json", headers=wire.headers)
        await nc.close()
        long_word = achievement_body(title_en="Sequence", description={"en": "ACGT" * 700})
        later = (await node.post("/api/v1/achievements", json=long_word, headers=STAFF)).json()

        async def later_found() -> bool:
            return later["id"] in await federation.search_ids(q="sequence")

        await eventually(later_found)
        letters = (await federation.hub.get("/api/v1/dead-letters", headers=STAFF)).json()
        assert any("not JSON" in letter["reason"] for letter in letters)


@contextlib.contextmanager
def _hub_process(port: int, nats_url: str, database: Path, registry: Path) -> Iterator[None]:
    """`ctta hub` as its own process, so it can be killed like a crashed server."""
    env = os.environ | {
        "CTTA_NATS_URL": nats_url,
        "CTTA_DATABASE_URL": f"sqlite:///{database}",
        "CTTA_REGISTRY_FILE": str(registry),
        "CTTA_MATCHING": "false",
        "CTTA_READER_TOKENS": json.dumps([STAFF["Authorization"].removeprefix("Bearer ")]),
    }
    command = [str(Path(sys.executable).parent / "ctta"), "hub", "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_hub_killed_mid_batch_restarts_to_the_union_of_manifests(
    nats_server: NatsServer, node_settings, registry_file: Path, tmp_path: Path
) -> None:
    nodes = [node_settings(c, nats_server.url) for c in CENTRES]
    await provision(nats_server.url)
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            s.centre: await stack.enter_async_context(serving(create_node(s))) for s in nodes
        }
        for n in range(1500):
            response = await clients[CENTRES[n % 3]].post(
                "/api/v1/achievements", json=achievement_body(title_en=f"Offer {n}"), headers=STAFF
            )
            assert response.status_code == 201, response.text
        expected = set()
        for centre, node in clients.items():
            manifest = await node.get("/api/v1/federation/manifest", params={"include": "records"})
            expected |= {
                (centre, r["kind"], r["id"], r["version"]) for r in manifest.json()["records"]
            }

        async def relayed() -> bool:
            statuses = [(await c.get("/api/v1/federation/status")).json() for c in clients.values()]
            return all(s["outbox_backlog"] == 0 for s in statuses)

        await eventually(relayed, timeout=60)
        port, database = free_port(), tmp_path / "hub.db"
        hub_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=hub_url) as hub:

            async def indexed() -> int:
                with contextlib.suppress(httpx.TransportError):
                    return (await hub.get("/healthz")).json()["indexed"]
                return 0

            with _hub_process(port, nats_server.url, database, registry_file) as first:
                killed_at = await eventually(indexed, timeout=60, interval=0.01)
                first.kill()
            assert killed_at < len(expected), "killed before the backlog was ingested"
            with _hub_process(port, nats_server.url, database, registry_file):

                async def converged() -> bool:
                    return _entries(database) == expected

                await eventually(converged, timeout=120, interval=0.5)
                letters = (await hub.get("/api/v1/dead-letters", headers=STAFF)).json()
                assert letters == []


def _entries(database: Path) -> set[tuple[str, str, str, int]]:
    engine = create_db_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as session:
            return {(c, *entry) for c in CENTRES for entry in index.live_entries(session, c)}
    finally:
        engine.dispose()
