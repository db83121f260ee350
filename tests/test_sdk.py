"""The integrator SDK against a real nats-server with nodes publishing."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import nats
import pytest
from ulid import ULID

from ctta.protocol.records import PublishedAchievement, PublishedDemand, Tombstone
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.sdk import IntegratorEvent, Subscription, event_filters, load_registry
from tests.support import STAFF, Federation, achievement_body, demand_body, eventually


async def publish_achievements(federation: Federation, centre: str, *titles: str) -> list[str]:
    """Create records at a node and wait until its relay has put them on the stream."""
    node = federation.nodes[centre]
    ids = []
    for title in titles:
        body = achievement_body(title_en=title)
        response = await node.post("/api/v1/achievements", json=body, headers=STAFF)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    await eventually(lambda: _on_stream(federation, ids))
    return ids


async def _on_stream(federation: Federation, ids: list[str]) -> bool:
    nc = await nats.connect(federation.nats.url)
    try:
        info = await nc.jetstream().stream_info("CTTA_EVENTS", subjects_filter="ctta.v1.evt.>")
    finally:
        await nc.close()
    subjects = info.state.subjects or {}
    return all(any(s.endswith(record_id) for s in subjects) for record_id in ids)


async def take(
    subscription: Subscription, count: int, *, ack: bool = True
) -> list[IntegratorEvent]:
    events = []
    for _ in range(count):
        event = await subscription.next(timeout=10)
        assert event is not None, f"only {len(events)} of {count} events arrived"
        if ack:
            await event.ack()
        events.append(event)
    return events


def record_ids(events: list[IntegratorEvent]) -> list[str]:
    return [event.record.id for event in events if event.record is not None]


@pytest.fixture
async def registry(registry_file: Path) -> FederationRegistry:
    return await load_registry(registry_file)


async def test_integrator_consumes_typed_verified_events_while_nodes_publish(
    federation: Federation, registry: FederationRegistry
) -> None:
    async with await Subscription.open(
        federation.nats.url, registry, durable="bank", start="beginning"
    ) as subscription:
        consumer = asyncio.create_task(take(subscription, 4))
        ids = await publish_achievements(federation, "eastern", "Solid electrolyte", "Heat pump")
        demand = await federation.nodes["southern"].post(
            "/api/v1/demands", json=demand_body(), headers=STAFF
        )
        withdrawn = await federation.nodes["eastern"].delete(
            f"/api/v1/achievements/{ids[0]}", headers=STAFF
        )
        assert withdrawn.status_code == 200, withdrawn.text
        events = await consumer

    assert all(event.verified and event.problem is None for event in events)
    by_type = {type(event.record): event for event in events}
    assert set(by_type) == {PublishedAchievement, PublishedDemand, Tombstone}
    achievement = next(e for e in events if isinstance(e.record, PublishedAchievement))
    assert achievement.record.title.en in {"Solid electrolyte", "Heat pump"}
    assert achievement.envelope is not None and achievement.envelope.centre == "eastern"
    assert "private" not in (achievement.data or {})
    assert by_type[PublishedDemand].record.id == demand.json()["id"]
    tombstone = by_type[Tombstone]
    assert tombstone.record.id == ids[0] and tombstone.envelope.action == "withdrawn"
    assert tombstone.record.version == 2
    assert tombstone.to_structured()["type"] == "org.ctta.achievement.withdrawn.v1"


async def test_restart_resumes_exactly_after_the_last_ack(
    federation: Federation, registry: FederationRegistry
) -> None:
    ids = await publish_achievements(federation, "eastern", *(f"Record {n}" for n in range(6)))
    open_bank = partial(
        Subscription.open,
        federation.nats.url,
        registry,
        durable="bank",
        start="beginning",
        ack_wait=1.0,
    )

    first = await open_bank()
    handled = await take(first, 2)
    unacked = await take(first, 1, ack=False)
    await first.nc.close()  # a crash: no nak, the server redelivers after ack_wait

    second = await open_bank()
    redelivered = await take(second, 2)
    await take(second, 1, ack=False)
    await second.close()  # a clean stop hands the unacked event straight back

    third = await open_bank()
    rest = await take(third, 2)
    assert await third.next(timeout=1.5) is None, "nothing after the last record"
    assert await third.pending() == 0
    await third.close()

    seen = record_ids(handled) + record_ids(redelivered) + record_ids(rest)
    assert seen == ids, "every record once, in order"
    assert record_ids(unacked) == [ids[2]]


async def test_start_from_now_from_a_time_and_from_the_beginning(
    federation: Federation, registry: FederationRegistry
) -> None:
    old = await publish_achievements(federation, "eastern", "Old one", "Old two")
    await asyncio.sleep(0.05)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.05)
    newer = await publish_achievements(federation, "eastern", "Newer")
    url = federation.nats.url
    from_now = await Subscription.open(url, registry, durable="now", start="now")
    from_time = await Subscription.open(url, registry, durable="time", start=middle)
    from_start = await Subscription.open(url, registry, start="beginning")  # ephemeral
    newest = await publish_achievements(federation, "eastern", "Newest")
    try:
        assert record_ids(await take(from_now, 1)) == newest
        assert record_ids(await take(from_time, 2)) == newer + newest
        assert record_ids(await take(from_start, 4)) == old + newer + newest
        for subscription in (from_now, from_time, from_start):
            assert await subscription.next(timeout=0.5) is None
    finally:
        for subscription in (from_now, from_time, from_start):
            await subscription.close()


async def test_a_tampered_event_fails_verification(
    federation: Federation, registry: FederationRegistry
) -> None:
    [record_id] = await publish_achievements(federation, "eastern", "Genuine")
    subject = f"ctta.v1.evt.eastern.achievement.{record_id}"
    nc = await nats.connect(federation.nats.url)
    js = nc.jetstream()
    genuine = await js.get_last_msg("CTTA_EVENTS", subject)
    forged_body = genuine.data.replace(b"Tsinghua University", b"Forged Institute Ltd")
    headers = {**(genuine.headers or {}), "Nats-Msg-Id": str(ULID())}
    await js.publish(subject, forged_body, headers=headers)
    await nc.close()

    async with await Subscription.open(
        federation.nats.url, registry, start="beginning"
    ) as subscription:
        ok, forged = await take(subscription, 2)
    assert ok.verified and ok.record is not None
    assert not forged.verified and forged.record is None
    assert forged.problem is not None and "bad signature" in forged.problem
    assert forged.data is not None and forged.data["owner_institution"] == "Forged Institute Ltd"

    async with await Subscription.open(
        federation.nats.url, registry, start="beginning", on_unverified="skip"
    ) as subscription:
        only = await take(subscription, 1)
        assert await subscription.next(timeout=0.5) is None, "the forged copy was skipped"
    assert only[0].verified


async def test_an_unknown_key_is_not_trusted(federation: Federation) -> None:
    """A registry without the centre's key cannot vouch for its events."""
    await publish_achievements(federation, "eastern", "Unvouched")
    async with await Subscription.open(
        federation.nats.url, FederationRegistry.alliance(), start="beginning"
    ) as subscription:
        [event] = await take(subscription, 1)
    assert not event.verified and "not in the federation registry" in (event.problem or "")


async def test_kind_and_centre_filters(
    federation: Federation, registry: FederationRegistry
) -> None:
    await publish_achievements(federation, "eastern", "Eastern offer")
    southern_offer = await publish_achievements(federation, "southern", "Southern offer")
    demand = await federation.nodes["eastern"].post(
        "/api/v1/demands", json=demand_body(), headers=STAFF
    )
    demand_id = demand.json()["id"]
    await eventually(lambda: _on_stream(federation, [demand_id]))
    url = federation.nats.url
    cases = {
        "demands": ({"kinds": ["demand"]}, [demand_id]),
        "southern": ({"centres": ["southern"]}, southern_offer),
        "southern-offers": ({"kinds": ["achievement"], "centres": ["southern"]}, southern_offer),
    }
    for name, (filters, expected) in cases.items():
        async with await Subscription.open(
            url, registry, durable=name, start="beginning", **filters
        ) as subscription:
            got = await take(subscription, len(expected))
            assert await subscription.next(timeout=0.5) is None, name
        assert record_ids(got) == expected, name


def test_filters_are_subjects_and_reject_bad_input() -> None:
    assert event_filters() == ["ctta.v1.evt.>"]
    assert event_filters(["demand", "case"], ["ocean"]) == [
        "ctta.v1.evt.ocean.demand.*",
        "ctta.v1.evt.ocean.case.*",
    ]
    with pytest.raises(ValueError, match="unknown kind"):
        event_filters(["widget"])
    with pytest.raises(ValueError, match="slug"):
        event_filters(centres=["Ocean.*"])


async def test_an_existing_durable_keeps_its_filters(
    federation: Federation, registry: FederationRegistry
) -> None:
    url = federation.nats.url
    await (await Subscription.open(url, registry, durable="office", kinds=["demand"])).close()
    with pytest.raises(ValueError, match="choose another name"):
        await Subscription.open(url, registry, durable="office", kinds=["case"])


@pytest.fixture
def registry_url(registry_file: Path) -> Iterator[str]:
    """The registry served over real HTTP on loopback, as the alliance would publish it."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(registry_file.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{registry_file.name}"
    server.shutdown()
    thread.join()


async def test_registry_loads_from_a_url(registry_url: str, registry_file: Path) -> None:
    assert await load_registry(registry_url) == FederationRegistry.load(registry_file)


async def test_integrator_credentials_are_required_and_used(
    tmp_path: Path, registry: FederationRegistry
) -> None:
    """A server that demands a user and password: the SDK connects with them, not without."""
    from ctta.deploy.natsserver import NatsServer, free_port
    from ctta.protocol import backbone

    server = NatsServer(
        free_port(), tmp_path / "auth-nats", extra_args=("--user", "bank", "--pass", "s3cret-pass")
    ).start()
    try:
        admin = await nats.connect(server.url, user="bank", password="s3cret-pass")
        await backbone.provision_single_server(admin.jetstream())
        await admin.close()
        async with await Subscription.open(
            server.url,
            registry,
            durable="bank",
            start="beginning",
            user="bank",
            password="s3cret-pass",
        ) as subscription:
            assert await subscription.pending() == 0
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(Subscription.open(server.url, registry, durable="bank"), 3)
    finally:
        server.stop()
