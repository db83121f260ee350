"""Event-signing keys rotate by key id: a centre switches to a new key, events signed with
the old one stay verifiable (a rebuild replays them), and a key removed from the registry
no longer vouches for anything."""

from __future__ import annotations

from pathlib import Path

import nats
from pydantic import SecretStr

from ctta.deploy.local import serving
from ctta.deploy.natsserver import NatsServer
from ctta.hub.app import create_app as create_hub
from ctta.hub.index.ingest import rebuild
from ctta.node.app import create_app as create_node
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.signing import SigningKey
from tests.support import STAFF, achievement_body, eventually, provision


async def test_old_signatures_stay_verifiable_after_a_rotation(
    nats_server: NatsServer, node_settings, hub_settings, registry_file: Path
) -> None:
    new_key = SigningKey.generate("eastern#2027")
    registry = FederationRegistry.load(registry_file)
    entry = registry.centre("eastern")
    assert entry is not None
    entry.keys[new_key.key_id] = new_key.public_key_b64()  # step 1: the alliance lists it
    registry.save(registry_file)
    await provision(nats_server.url)
    old_settings = node_settings("eastern", nats_server.url)
    new_settings = old_settings.model_copy(
        update={
            "signing_key_id": new_key.key_id,
            "signing_key_seed": SecretStr(new_key.seed_b64()),
        }
    )
    hub_app = create_hub(hub_settings(nats_server.url).model_copy(update={"matching": False}))
    async with serving(hub_app) as hub:

        async def found() -> set[str]:
            hits = (await hub.get("/api/v1/search", params={"limit": 100})).json()["hits"]
            return {hit["id"] for hit in hits}

        async with serving(create_node(old_settings)) as node:
            signed_old = await node.post(
                "/api/v1/achievements", json=achievement_body(), headers=STAFF
            )
            await eventually(lambda: _relayed(node))
        async with serving(create_node(new_settings)) as node:  # step 2: the node switches
            signed_new = await node.post(
                "/api/v1/achievements", json=achievement_body(title_en="New key"), headers=STAFF
            )
            await eventually(lambda: _relayed(node))
        both = {signed_old.json()["id"], signed_new.json()["id"]}
        await eventually(lambda: _equals(found(), both))
        assert hub_app.state.ingest.dead_letters == 0

        nc = await nats.connect(nats_server.url)
        replayed = await rebuild(hub_app.state.engine, hub_app.state.registry, nc.jetstream())
        assert replayed == 2 and await found() == both, "the old key's event still verifies"

        # Step 3, once nothing signed with it matters: the old key is removed (revoked).
        entry.keys.pop(old_settings.signing_key_id)
        replayed = await rebuild(hub_app.state.engine, registry, nc.jetstream())
        await nc.close()
        assert replayed == 1 and await found() == {signed_new.json()["id"]}


async def _equals(value, expected) -> bool:
    return await value == expected


async def _relayed(node) -> bool:
    return (await node.get("/api/v1/federation/status")).json()["outbox_backlog"] == 0
