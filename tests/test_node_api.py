"""The node contract suite, run against SQLite and the PostgreSQL on this machine.

These nodes point at a NATS port nobody listens on: writes must be accepted anyway and
wait in the outbox (the backbone being down is the normal case for this suite).
"""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, select

from ctta.deploy.natsserver import free_port
from ctta.node.app import create_app
from ctta.node.federation import service as federation
from ctta.server.outbox.models import OutboxEvent
from tests.support import STAFF, achievement_body, demand_body, serving


@pytest.fixture
async def node(node_settings, database_url: str):
    app = create_app(node_settings("eastern", f"nats://127.0.0.1:{free_port()}", database_url))
    async with serving(app) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


async def create(node, path: str = "/api/v1/achievements", **body_extra) -> dict:
    body = achievement_body(**body_extra) if "achievements" in path else demand_body(**body_extra)
    response = await node.post(path, json=body, headers=STAFF)
    assert response.status_code == 201, response.text
    return response.json()


def outbox_rows(node) -> list[OutboxEvent]:
    with Session(node.app.state.engine) as session:
        return list(session.exec(select(OutboxEvent).order_by(OutboxEvent.seq)))


async def test_create_and_get(node) -> None:
    created = await create(node)
    assert created["version"] == 1 and created["centre"] == "eastern" and len(created["id"]) == 26
    assert created["private"]["contact_email"] == "wang@example.cn"
    public = (await node.get(f"/api/v1/achievements/{created['id']}")).json()
    assert public["title"]["zh"] == "锂电池回收再利用技术"
    assert public["private"] is None, "private fields are for staff only"


async def test_writes_need_a_token(node) -> None:
    response = await node.post("/api/v1/achievements", json=achievement_body())
    assert response.status_code == 401
    bad = await node.post(
        "/api/v1/achievements", json=achievement_body(), headers={"Authorization": "Bearer nope"}
    )
    assert bad.status_code == 401


async def test_validation_errors_are_clear_and_nothing_is_stored(node) -> None:
    response = await node.post(
        "/api/v1/achievements", json=achievement_body(trl=0, title={}), headers=STAFF
    )
    assert response.status_code == 422
    fields = {tuple(error["loc"][1:2]) for error in response.json()["detail"]}
    assert {("trl",), ("title",)} <= fields
    assert outbox_rows(node) == []


async def test_private_fields_never_reach_the_outbox(node) -> None:
    await create(node)
    [row] = outbox_rows(node)
    assert "wang@example.cn" not in row.body.decode() and "底价" not in row.body.decode()
    assert json.loads(row.body)["title"]["en"] == "Lithium battery recycling"


async def test_private_records_are_not_published(node) -> None:
    await create(node, visibility="private")
    assert outbox_rows(node) == []
    listing = (await node.get("/api/v1/achievements")).json()
    assert listing["items"] == []
    staff_listing = (await node.get("/api/v1/achievements", headers=STAFF)).json()
    assert len(staff_listing["items"]) == 1


async def test_update_with_current_version_and_conflict(node) -> None:
    created = await create(node)
    body = achievement_body(title_en="Lithium battery recycling, second edition", version=1)
    updated = await node.put(f"/api/v1/achievements/{created['id']}", json=body, headers=STAFF)
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    stale = await node.put(f"/api/v1/achievements/{created['id']}", json=body, headers=STAFF)
    assert stale.status_code == 409
    assert "version 2, not 1" in stale.json()["detail"]
    assert [row.record_version for row in outbox_rows(node)] == [1, 2]


async def test_becoming_private_publishes_a_tombstone(node) -> None:
    created = await create(node)
    body = achievement_body(visibility="private", version=1)
    assert (
        await node.put(f"/api/v1/achievements/{created['id']}", json=body, headers=STAFF)
    ).status_code == 200
    rows = outbox_rows(node)
    assert [row.headers["ce-type"] for row in rows] == [
        "org.ctta.achievement.upserted.v1",
        "org.ctta.achievement.withdrawn.v1",
    ]
    assert json.loads(rows[1].body)["reason"] == "private"


async def test_withdraw_is_final(node) -> None:
    created = await create(node)
    url = f"/api/v1/achievements/{created['id']}"
    withdrawn = await node.delete(url, params={"version": 1}, headers=STAFF)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    assert (await node.delete(url, headers=STAFF)).status_code == 410
    update = await node.put(url, json=achievement_body(version=2), headers=STAFF)
    assert update.status_code == 410
    assert (await node.get("/api/v1/achievements")).json()["items"] == []
    assert outbox_rows(node)[-1].headers["ce-type"] == "org.ctta.achievement.withdrawn.v1"


async def test_list_filters(node) -> None:
    await create(
        node, trl=3, fields=["new-materials"], title_zh="石墨烯导热膜", title_en="Graphene film"
    )
    await create(node, trl=8)
    await create(node, "/api/v1/demands")

    async def ids(**params) -> list[str]:
        response = await node.get("/api/v1/achievements", params=params)
        assert response.status_code == 200, response.text
        return [item["title"]["en"] for item in response.json()["items"]]

    assert await ids(trl_min=5) == ["Lithium battery recycling"]
    assert await ids(field="new-materials") == ["Graphene film"]
    assert await ids(q="石墨烯") == ["Graphene film"]
    assert await ids(q="GRAPHENE film") == ["Graphene film"]
    assert await ids(status="withdrawn") == []
    assert len(await ids()) == 2
    assert (
        await node.get("/api/v1/achievements", params={"field": "astrology"})
    ).status_code == 422
    demands = (await node.get("/api/v1/demands")).json()["items"]
    assert [d["enterprise"] for d in demands] == ["郑州宇通客车"]


async def test_cursor_pagination_visits_every_record_once(node) -> None:
    created = {(await create(node, title_en=f"Offer {i}"))["id"] for i in range(7)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await node.get("/api/v1/achievements", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 and set(seen) == created
    assert seen == sorted(seen, reverse=True), "newest first"


async def test_all_four_kinds(node) -> None:
    professional = {
        "title": {"zh": "高级技术经理人"},
        "summary": {"en": "Broker for battery technology"},
        "name": {"zh": "李娜", "en": "Li Na"},
        "fields": ["energy-storage"],
        "languages": ["zh", "en"],
    }
    case = {
        "title": {"en": "Licence of a separator coating"},
        "summary": {"en": "Closed in 2025"},
        "contract_type": "licence",
        "value_band": "1m-10m",
        "centres_involved": ["eastern", "southern"],
    }
    for path, body in (("/api/v1/professionals", professional), ("/api/v1/cases", case)):
        response = await node.post(path, json=body, headers=STAFF)
        assert response.status_code == 201, response.text
        assert (await node.get(f"{path}/{response.json()['id']}")).status_code == 200
    assert (await node.get("/api/v1/cases/01JA0C2E8R5T7V9X1Z3B5D7F9H")).status_code == 404


async def test_manifest_and_status_while_nats_is_down(node) -> None:
    kept = await create(node)
    gone = await create(node)
    await create(node, visibility="private")
    await node.delete(f"/api/v1/achievements/{gone['id']}", headers=STAFF)
    manifest = (await node.get("/api/v1/federation/manifest", params={"include": "records"})).json()
    assert manifest["count"] == 1
    assert manifest["records"] == [{"kind": "achievement", "id": kept["id"], "version": 1}]
    status = (await node.get("/api/v1/federation/status")).json()
    assert status["outbox_backlog"] == 3
    assert status["nats"] in {"connecting", "disconnected"}
    assert (await node.get("/healthz")).json()["status"] == "ok"
    ready = await node.get("/readyz")
    # The node is ready without NATS: writes wait in the outbox.
    assert ready.status_code == 200, ready.text
    assert ready.json()["database"] == "ok" and ready.json()["nats"] != "connected"


async def test_openapi_lists_every_path(node) -> None:
    paths = (await node.get("/openapi.json")).json()["paths"]
    for expected in (
        "/api/v1/achievements",
        "/api/v1/demands/{record_id}",
        "/api/v1/federation/manifest",
        "/healthz",
    ):
        assert expected in paths


async def test_heartbeat_rereads_the_manifest_only_after_a_change(node) -> None:
    state = federation.PublishedState()
    engine = node.app.state.engine

    def beat():
        with Session(engine) as session:
            return federation.heartbeat(session, "eastern", None, state)

    await create(node)
    first = beat()
    assert first.manifest is not None and first.manifest.count == 1
    assert beat().manifest is first.manifest, "nothing changed: the summary is reused"
    private = await create(node, visibility="private")  # not published: no outbox row
    assert beat().manifest is first.manifest
    await node.put(
        f"/api/v1/achievements/{private['id']}",
        json=achievement_body(version=1, visibility="public"),
        headers=STAFF,
    )
    changed = beat()
    assert changed.manifest is not None and changed.manifest.count == 2
    assert changed.counts == {"achievement": 2}
