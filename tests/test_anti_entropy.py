"""Anti-entropy: the hub finds what its index lost, asks the centre, and the node re-publishes."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from sqlalchemy import delete, text, update
from sqlmodel import Session, col, select
from ulid import ULID

from ctta.deploy.natsserver import NatsServer
from ctta.hub.app import MIGRATIONS
from ctta.hub.centres.anti_entropy import Policy, check, run_anti_entropy
from ctta.hub.centres.models import CentreHeartbeat, CentreSync
from ctta.hub.index import service as index
from ctta.hub.index.models import IndexedRecord
from ctta.protocol import backbone
from ctta.protocol.envelope import build_event
from ctta.protocol.manifest import Entry, bucket_of, buckets, differing_buckets, summary
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.resync import ResyncRequest
from ctta.protocol.signing import SigningKey
from ctta.protocol.subjects import record_subject
from ctta.protocol.taxonomy import RecordKind
from ctta.server.db import create_db_engine, is_sqlite, migrate
from ctta.server.deadletters import DeadLetter
from ctta.server.outbox.models import OutboxEvent
from tests.support import STAFF, Federation, achievement_body, demand_body, eventually


def _ulid() -> str:
    return str(ULID())


def test_bucket_summaries_locate_missing_extra_and_changed_records() -> None:
    same, changed, missing, extra = _ulid(), _ulid(), _ulid(), _ulid()
    node: list[Entry] = [
        ("achievement", same, 1),
        ("demand", changed, 3),
        ("case", missing, 1),
    ]
    hub: list[Entry] = [("achievement", same, 1), ("demand", changed, 2), ("case", extra, 4)]
    assert summary(node) != summary(hub)
    assert summary(list(reversed(node))) == summary(node), "order does not matter"
    differing = differing_buckets(buckets(node), buckets(hub))
    assert {bucket_of("demand", changed), bucket_of("case", missing)} <= differing
    assert bucket_of("case", extra) in differing
    assert differing_buckets(buckets(node), buckets(node)) == set()


def _index_row(centre: str, kind: str, record_id: str, version: int) -> IndexedRecord:
    now = datetime.now(UTC)
    return IndexedRecord(
        centre=centre,
        kind=kind,
        record_id=record_id,
        version=version,
        event_id=_ulid(),
        event_time=now,
        indexed_at=now,
    )


def _resync_rows(session: Session) -> list[OutboxEvent]:
    statement = select(OutboxEvent).where(OutboxEvent.record_kind == "resync")
    return list(session.exec(statement.order_by(col(OutboxEvent.seq))))


def test_a_mismatch_is_confirmed_then_repaired_at_a_spaced_rate(tmp_path: Path) -> None:
    """Two differing checks before a request; then a window that doubles while the gap stays."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    migrate(engine, MIGRATIONS)
    registry = FederationRegistry.alliance()
    policy = Policy(interval=1.0, heartbeat_timeout=3600)
    old, lost = _ulid(), _ulid()
    manifest = summary([("achievement", old, 2), ("demand", lost, 1)])
    start = datetime.now(UTC)
    with Session(engine) as session:
        session.add(_index_row("eastern", "achievement", old, 1))
        session.add(
            CentreHeartbeat(
                centre="eastern",
                received_at=start,
                outbox_backlog=0,
                manifest_count=manifest.count,
                manifest_digest=manifest.digest,
            )
        )
        session.commit()

    def run_check(after: float) -> list[str]:
        with Session(engine) as session:
            requested = check(session, registry, policy, start + timedelta(seconds=after))
            session.commit()
            return requested

    def state() -> CentreSync:
        with Session(engine) as session:
            row = session.get(CentreSync, "eastern")
            assert row is not None
            return row

    assert run_check(0) == [] and state().mismatched_checks == 1, "one difference may be in flight"
    assert run_check(1) == ["eastern"]
    assert [run_check(t) for t in (2, 3)] == [[], []], "a repair gets three intervals"
    assert run_check(4) == ["eastern"]
    assert [run_check(t) for t in (5, 9)] == [[], []], "the window doubles while the gap stays"
    assert run_check(10) == ["eastern"]
    with Session(engine) as session:
        rows = _resync_rows(session)
        assert len(rows) == 3 and all(
            row.subject.startswith("ctta.v1.route.eastern.resync.") for row in rows
        )
        request = ResyncRequest.model_validate_json(rows[0].body)
    assert request.node == manifest and request.hub.count == 1
    node_buckets = buckets([("achievement", old, 2), ("demand", lost, 1)])
    assert differing_buckets(node_buckets, request.buckets) == {
        bucket_of("achievement", old),
        bucket_of("demand", lost),
    }
    synced = state()
    assert (synced.repairs_requested, synced.in_sync) == (3, False)
    assert synced.mismatched_since == start

    with Session(engine) as session:  # a backlog means events in flight: no comparison
        session.execute(update(CentreHeartbeat).values(outbox_backlog=3))
        session.commit()
    assert run_check(30) == [] and state().checked_at == start + timedelta(seconds=10)
    with Session(engine) as session:
        session.execute(update(CentreHeartbeat).values(outbox_backlog=0))
        session.execute(update(IndexedRecord).values(version=2))
        session.add(_index_row("eastern", "demand", lost, 1))
        session.commit()
    assert run_check(31) == []
    repaired = state()
    assert repaired.in_sync and repaired.mismatched_since is None
    assert repaired.last_in_sync_at == start + timedelta(seconds=31)
    assert repaired.repairs_requested == 3 and repaired.repairs_since_in_sync == 0
    with Session(engine) as session:  # a silent node is not compared (it could not answer)
        session.add(_index_row("eastern", "case", _ulid(), 1))
        session.commit()
    assert run_check(4000) == [] and state().in_sync
    engine.dispose()


def _dead_letters(engine: Any) -> list[DeadLetter]:
    with Session(engine) as session:
        return list(session.exec(select(DeadLetter).order_by(col(DeadLetter.id))))


async def test_same_version_again_is_acked_an_older_one_is_dead_lettered(
    federation: Federation, federation_keys: dict[str, SigningKey]
) -> None:
    node, engine = federation.nodes["eastern"], federation.hub_app.state.engine
    created = (
        await node.post("/api/v1/achievements", json=achievement_body(), headers=STAFF)
    ).json()
    url = f"/api/v1/records/eastern/achievement/{created['id']}"

    async def hub_version() -> int | None:
        response = await federation.hub.get(url)
        return response.json()["version"] if response.status_code == 200 else None

    await eventually(lambda: _equals(hub_version, 1))
    version_1 = (await federation.hub.get(url)).json()

    def event(data: dict[str, Any]):
        return build_event(
            nats_subject=record_subject("eastern", RecordKind.ACHIEVEMENT, created["id"]),
            centre="eastern",
            event_type="org.ctta.achievement.upserted.v1",
            ce_subject=f"achievement/{created['id']}",
            version=data["version"],
            data=data,
            dataschema="http://hub/api/v1/schemas/achievement.json",
            signing_key=federation_keys["eastern"],
        )

    nc = await nats.connect(federation.nats.url)
    js = nc.jetstream()
    try:
        unchanged = federation.hub_app.state.ingest.unchanged
        again = event(version_1)  # a new event id, the version the hub holds
        await js.publish(again.subject, again.body, headers=again.headers)

        async def acked() -> bool:
            return federation.hub_app.state.ingest.unchanged == unchanged + 1

        await eventually(acked)
        assert _dead_letters(engine) == []

        body = achievement_body(title_en="Second version", version=1)
        assert (
            await node.put(f"/api/v1/achievements/{created['id']}", json=body, headers=STAFF)
        ).status_code == 200
        await eventually(lambda: _equals(hub_version, 2))
        replay = event(version_1)
        await js.publish(replay.subject, replay.body, headers=replay.headers)

        async def refused() -> list[DeadLetter]:
            return _dead_letters(engine)

        letters = await eventually(refused)
    finally:
        await nc.close()
    assert len(letters) == 1 and "stale version 1" in letters[0].reason
    assert await hub_version() == 2


async def _equals(read: Any, expected: Any) -> bool:
    return await read() == expected


async def _manifest(node: Any) -> set[Entry]:
    response = await node.get("/api/v1/federation/manifest", params={"include": "records"})
    return {(r["kind"], r["id"], r["version"]) for r in response.json()["records"]}


def _live(engine: Any, centre: str) -> set[Entry]:
    with Session(engine) as session:
        return set(index.live_entries(session, centre))


async def _sync(federation: Federation) -> dict[str, dict[str, Any] | None]:
    centres = (await federation.hub.get("/api/v1/centres")).json()
    return {centre["id"]: centre["sync"] for centre in centres}


async def _resync_messages(js: Any, centre: str) -> int:
    info = await js.stream_info(
        backbone.ROUTES_STREAM, subjects_filter=f"ctta.v1.route.{centre}.resync.*"
    )
    return sum((info.state.subjects or {}).values())


async def test_hub_repairs_lost_rows_old_versions_and_missed_tombstones(
    nats_server: NatsServer, node_settings, hub_settings, database_url: str
) -> None:
    nodes = [node_settings(centre, nats_server.url) for centre in ("eastern", "southern")]
    hub = hub_settings(nats_server.url, database_url).model_copy(update={"matching": False})
    async with Federation.start(nats_server, nodes, hub) as federation:
        eastern, southern = federation.nodes["eastern"], federation.nodes["southern"]
        engine = federation.hub_app.state.engine
        ids = []
        for n in range(4):
            response = await eastern.post(
                "/api/v1/achievements", json=achievement_body(title_en=f"Offer {n}"), headers=STAFF
            )
            ids.append(response.json()["id"])
        lost, older, also_lost, withdrawn = ids
        await southern.post("/api/v1/demands", json=demand_body(), headers=STAFF)
        body = achievement_body(title_en="Offer 1, second version", version=1)
        await eastern.put(f"/api/v1/achievements/{older}", json=body, headers=STAFF)

        async def converged() -> bool:
            return _live(engine, "eastern") == await _manifest(eastern) and _live(
                engine, "southern"
            ) == await _manifest(southern)

        await eventually(converged)
        with Session(engine) as session:
            before_withdrawal = index.find(session, "eastern", "achievement", withdrawn)
            assert before_withdrawal is not None and before_withdrawal.version == 1
        await eastern.delete(f"/api/v1/achievements/{withdrawn}", headers=STAFF)
        await eventually(converged)

        with Session(engine) as session:  # the hub loses what it had been told
            gone = list(
                session.exec(
                    select(IndexedRecord.pk).where(
                        col(IndexedRecord.record_id).in_([lost, also_lost])
                    )
                )
            )
            if is_sqlite(engine):
                session.execute(
                    text("DELETE FROM record_fts WHERE rowid = :pk"), [{"pk": pk} for pk in gone]
                )
            session.execute(delete(IndexedRecord).where(col(IndexedRecord.pk).in_(gone)))
            session.execute(
                update(IndexedRecord).where(IndexedRecord.record_id == older).values(version=1)
            )
            restored = before_withdrawal.model_dump(exclude={"pk"})
            session.execute(
                update(IndexedRecord).where(IndexedRecord.record_id == withdrawn).values(**restored)
            )
            session.commit()
        assert _live(engine, "eastern") != await _manifest(eastern)
        dead_before = len(_dead_letters(engine))

        checker = asyncio.create_task(
            run_anti_entropy(
                engine,
                federation.hub_app.state.registry,
                interval=1.0,
                heartbeat_timeout=5.0,
                wake_relay=lambda: None,
            )
        )
        try:

            async def repaired() -> dict[str, Any] | None:
                sync = (await _sync(federation))["eastern"]
                in_sync = sync is not None and sync["in_sync"] and sync["repairs_requested"] >= 1
                return sync if in_sync and await converged() else None

            sync = await eventually(repaired, timeout=40, interval=0.2)
        finally:
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker

        assert sync["node_count"] == sync["hub_count"] == 3
        assert sync["node_digest"] == sync["hub_digest"]
        assert sync["last_repair_requested_at"] is not None and sync["mismatched_since"] is None
        with Session(engine) as session:
            tombstone = index.find(session, "eastern", "achievement", withdrawn)
            assert tombstone is not None and tombstone.withdrawn and tombstone.version == 2
        assert {lost, older, also_lost} <= await federation.search_ids(q="offer")
        southern_sync = (await _sync(federation))["southern"]
        assert southern_sync is not None and southern_sync["in_sync"]
        assert southern_sync["repairs_requested"] == 0
        nc = await nats.connect(federation.nats.url)
        try:
            js = nc.jetstream()
            assert await _resync_messages(js, "eastern") >= 1
            assert await _resync_messages(js, "southern") == 0, "an in-sync centre is left alone"
        finally:
            await nc.close()
        assert len(_dead_letters(engine)) == dead_before, "re-published versions are not stale"
        for node in (eastern, southern):
            letters = await node.get("/api/v1/federation/dead-letters", headers=STAFF)
            assert letters.json() == []
