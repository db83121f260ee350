"""The production topology with real servers on loopback: a three-server hub cluster, a
leaf per centre with its own JetStream domain, NKey credentials with least privilege."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import nats.errors
import nats.js.errors
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlmodel import Session

from ctta.deploy.cluster import LeafBackbone, leaf_backbone
from ctta.deploy.local import serving
from ctta.deploy.topology import integrator_durable, integrator_user, leaf_user
from ctta.hub.app import create_app as create_hub
from ctta.hub.index import service as index
from ctta.node.app import create_app as create_node
from ctta.protocol import backbone, sdk
from ctta.protocol.registry import FederationRegistry
from tests.support import STAFF, achievement_body, bus_battery_offer, demand_body, eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CENTRES = ["eastern", "southern", "ocean"]


@dataclass
class LeafFederation:
    backbone: LeafBackbone
    nodes: dict[str, httpx.AsyncClient]
    hub: httpx.AsyncClient
    hub_app: FastAPI

    def index_entries(self) -> set[tuple[str, str, str, int]]:
        with Session(self.hub_app.state.engine) as session:
            return {(c, *entry) for c in self.nodes for entry in index.live_entries(session, c)}

    async def manifest_union(self) -> set[tuple[str, str, str, int]]:
        union = set()
        for centre, node in self.nodes.items():
            response = await node.get("/api/v1/federation/manifest", params={"include": "records"})
            union |= {
                (centre, r["kind"], r["id"], r["version"]) for r in response.json()["records"]
            }
        return union


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, node_settings, hub_settings, *, matching: bool = False, **options: object
) -> AsyncIterator[LeafFederation]:
    """Nodes on their own leaves and the hub on the cluster: the same apps as on one server,
    only their URLs (and the hub's NKey) differ."""
    async with (
        leaf_backbone(tmp_path / "backbone", CENTRES, **options) as leaves,
        contextlib.AsyncExitStack() as stack,
    ):
        nodes = {
            c: await stack.enter_async_context(
                serving(create_node(node_settings(c, leaves.leaf_url(c))))
            )
            for c in CENTRES
        }
        hub_app = create_hub(
            hub_settings(leaves.hub_url).model_copy(
                update={"matching": matching, "nats_nkey_seed": SecretStr(leaves.hub_seed)}
            )
        )
        hub = await stack.enter_async_context(serving(hub_app))
        yield LeafFederation(leaves, nodes, hub, hub_app)


async def test_a_record_reaches_the_hub_and_a_match_reaches_the_other_centre(
    tmp_path: Path, node_settings, hub_settings
) -> None:
    async with running(tmp_path, node_settings, hub_settings, matching=True) as federation:
        eastern, southern = federation.nodes["eastern"], federation.nodes["southern"]
        offer = await eastern.post(
            "/api/v1/achievements",
            headers=STAFF,
            json=bus_battery_offer(),
        )
        assert offer.status_code == 201, offer.text
        need = await southern.post("/api/v1/demands", headers=STAFF, json=demand_body())

        async def indexed() -> bool:
            hits = (await federation.hub.get("/api/v1/search")).json()["hits"]
            return {h["id"] for h in hits} == {offer.json()["id"], need.json()["id"]}

        await eventually(indexed, timeout=30)

        async def inbox(centre: str) -> list[dict]:
            response = await federation.nodes[centre].get("/api/v1/matches", headers=STAFF)
            return response.json()["items"]

        async def routed_to_both() -> list[dict] | None:
            east, south = await inbox("eastern"), await inbox("southern")
            return east if east and south and east[0]["id"] == south[0]["id"] else None

        [match] = await eventually(routed_to_both, timeout=30)
        assert match["achievement"]["id"] == offer.json()["id"]
        assert match["demand"] == {"centre": "southern", "id": need.json()["id"]}
        assert await inbox("ocean") == [], "a centre receives only its own routes"

        async def alive() -> bool:
            centres = (await federation.hub.get("/api/v1/centres")).json()
            return set(CENTRES) <= {c["id"] for c in centres if c["alive"]}

        await eventually(alive), "heartbeats cross the leaf links"


async def test_a_cut_link_loses_and_duplicates_nothing(
    tmp_path: Path, node_settings, hub_settings, record_property
) -> None:
    """The eastern leaf keeps running and accepting writes while its link to the hub is
    down; the hub's source catches up when it returns."""
    async with running(tmp_path, node_settings, hub_settings, linked=("eastern",)) as federation:
        link = federation.backbone.links["eastern"]
        eastern = federation.nodes["eastern"]
        await link.cut()
        ids = []
        for n in range(40):
            response = await eastern.post(
                "/api/v1/achievements", headers=STAFF, json=achievement_body(title_en=f"Offer {n}")
            )
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])

        async def published_locally() -> bool:
            status = (await eastern.get("/api/v1/federation/status")).json()
            return status["outbox_backlog"] == 0

        await eventually(published_locally, timeout=20)
        assert not federation.index_entries(), "nothing crosses a cut link"
        await link.restore()
        restored = time.monotonic()

        async def converged() -> bool:
            return federation.index_entries() == await federation.manifest_union()

        await eventually(converged, timeout=120, interval=0.25)
        catch_up = time.monotonic() - restored
        assert {entry[2] for entry in federation.index_entries()} == set(ids)
        assert federation.hub_app.state.ingest.dead_letters == 0
        nc = await federation.backbone.connect_hub()
        info = await nc.jetstream().stream_info(backbone.EVENTS_STREAM)
        await nc.close()
        assert info.state.messages == len(ids), "each event once at the hub"
        record_property("catch_up_seconds", round(catch_up, 1))


async def test_one_hub_server_killed_during_load_ingest_continues(
    tmp_path: Path, node_settings, hub_settings
) -> None:
    async with running(tmp_path, node_settings, hub_settings) as federation:
        total, counter, accepted = 300, itertools.count(), []

        async def writer() -> None:
            while (n := next(counter)) < total:
                if n == 100:
                    federation.backbone.hub_server("hub-2").kill()
                centre = CENTRES[n % 3]
                response = await federation.nodes[centre].post(
                    "/api/v1/achievements", headers=STAFF, json=achievement_body(title_en=f"{n}")
                )
                assert response.status_code == 201, response.text
                accepted.append(response.json()["id"])

        await asyncio.gather(*(writer() for _ in range(6)))

        async def converged() -> bool:
            return federation.index_entries() == await federation.manifest_union()

        await eventually(converged, timeout=120, interval=0.5)
        assert len(federation.index_entries()) == total
        assert federation.hub_app.state.ingest.dead_letters == 0


async def test_credentials_allow_only_what_each_party_owns(tmp_path: Path) -> None:
    async with leaf_backbone(tmp_path, ["eastern", "southern"], integrators=("acme",)) as leaves:
        admin = await leaves.connect_hub()
        hub_js = admin.jetstream()
        await hub_js.add_consumer(
            backbone.EVENTS_STREAM,
            sdk.consumer_config(integrator_durable("acme"), sdk.event_filters(), "beginning"),
        )
        await hub_js.add_consumer(
            backbone.EVENTS_STREAM,
            sdk.consumer_config("someone-else", sdk.event_filters(), "beginning"),
        )
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        # Centre B's leaf credential, used directly against the hub cluster.
        southern = await leaves.connect_hub(
            leaves.users[leaf_user("southern")].seed, error_cb=on_error
        )
        await southern.publish("ctta.v1.evt.eastern.achievement.FORGED", b"{}")
        await southern.subscribe("ctta.v1.route.eastern.>")
        await southern.subscribe("_INBOX.>")  # others' replies and pull deliveries
        with pytest.raises((TimeoutError, nats.errors.Error)):
            await southern.jetstream(domain="hub", timeout=2).add_consumer(
                backbone.ROUTES_STREAM,
                durable_name="peek",
                filter_subject="ctta.v1.route.eastern.>",
            )
        await southern.flush()
        await eventually(lambda: _async(len(errors) >= 2))
        # nats-py reports permission errors lower-cased, and only through error_cb.
        assert any('publish to "ctta.v1.evt.eastern.achievement.forged"' in e for e in errors)
        assert any('subscription to "ctta.v1.route.eastern.>"' in e for e in errors)
        await eventually(lambda: _async(any('subscription to "_inbox.>"' in e for e in errors)))

        # A client of B's own leaf publishing as A: no stream anywhere takes it.
        on_b = await nats.connect(leaves.leaf_url("southern"))
        with pytest.raises(nats.js.errors.NoStreamResponseError):
            await on_b.jetstream().publish("ctta.v1.evt.eastern.achievement.SPOOF", b"{}")
        await on_b.jetstream().publish("ctta.v1.evt.southern.achievement.OWN", b"{}")

        async def sourced() -> bool:
            return (await hub_js.stream_info(backbone.EVENTS_STREAM)).state.messages == 1

        await eventually(sourced, timeout=30)
        last = await hub_js.get_last_msg(backbone.EVENTS_STREAM, "ctta.v1.evt.>")
        assert last.subject == "ctta.v1.evt.southern.achievement.OWN"

        # The integrator: reads its own consumer, nothing else, and publishes nothing.
        errors.clear()
        registry = FederationRegistry.alliance()
        acme_seed = leaves.users[integrator_user("acme")].seed
        async with await sdk.Subscription.open(
            leaves.hub_url, registry, durable=integrator_durable("acme"), nkey_seed=acme_seed
        ) as own:
            event = await own.next(timeout=5)
            assert event is not None and event.subject == "ctta.v1.evt.southern.achievement.OWN"
            assert not event.verified, "not a signed CloudEvent: surfaced, never trusted"
            await event.ack()
        # nats-py reports a permission denial only to error_cb; the request times out.
        with pytest.raises((TimeoutError, nats.errors.Error)):
            await sdk.Subscription.open(
                leaves.hub_url, registry, durable="someone-else", nkey_seed=acme_seed
            )
        acme = await leaves.connect_hub(acme_seed, error_cb=on_error)
        await acme.publish("ctta.v1.evt.southern.achievement.OWN", b"{}")
        await acme.flush()
        await eventually(lambda: _async(any("publish to" in e for e in errors)))
        for connection in (admin, southern, on_b, acme):
            await connection.close()


async def _async(value: object) -> object:
    return value
