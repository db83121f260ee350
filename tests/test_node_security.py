"""Node API security: roles on hashed tokens, visibility, size and rate limits, the audit
log, oversized events, and private fields that never leave the node.

Store-touching tests run on SQLite and on the PostgreSQL of this machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import inspect
from sqlmodel import Session, select

from ctta.deploy.natsserver import free_port
from ctta.node.app import MIGRATIONS, create_app
from ctta.node.audit.models import AuditEntry
from ctta.node.records.models import Record
from ctta.node.tokens.models import ApiToken
from ctta.protocol.envelope import MAX_EVENT_BYTES
from ctta.server.db import create_db_engine, migrate
from ctta.server.outbox.models import OutboxEvent
from tests.support import STAFF, achievement_body, eventually, serving

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ACHIEVEMENTS = "/api/v1/achievements"
TOKENS = "/api/v1/admin/tokens"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_node(node_settings):
    """Factory: a running node of eastern (NATS unreachable) with settings overridden."""

    def make(database_url: str | None = None, **overrides: Any):
        settings = node_settings("eastern", f"nats://127.0.0.1:{free_port()}", database_url)
        settings = settings.model_copy(
            update={"admin_tokens": [SecretStr(ADMIN_TOKEN)], **overrides}
        )
        return create_app(settings)

    return make


@pytest.fixture
async def node(make_node, database_url: str) -> AsyncIterator:
    app = make_node(database_url)
    async with serving(app) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


def rows(node, model: type) -> list:
    with Session(node.app.state.engine) as session:
        return list(session.exec(select(model)))


async def issue(node, role: str, label: str | None = None) -> dict[str, Any]:
    response = await node.post(TOKENS, json={"label": label or role, "role": role}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


async def test_role_matrix_on_hashed_tokens(node) -> None:
    reader, staff, admin = [(await issue(node, r))["token"] for r in ("reader", "staff", "admin")]
    assert all(token.startswith("ctta_") and len(token) > 40 for token in (reader, staff, admin))

    refused = await node.post(ACHIEVEMENTS, json=achievement_body(), headers=bearer(reader))
    assert refused.status_code == 403 and "staff" in refused.json()["detail"]
    created = await node.post(ACHIEVEMENTS, json=achievement_body(), headers=bearer(staff))
    assert created.status_code == 201, created.text
    new_token = {"label": "x", "role": "reader"}
    assert (await node.post(TOKENS, json=new_token, headers=bearer(staff))).status_code == 403
    assert (await node.get(TOKENS, headers=bearer(staff))).status_code == 403
    assert (await node.get("/api/v1/audit", headers=bearer(reader))).status_code == 403
    assert (await node.get(TOKENS, headers=bearer(admin))).status_code == 200
    assert (await node.get(TOKENS, headers=STAFF)).status_code == 403, "settings staff token"
    assert (await node.get("/api/v1/matches", headers=bearer(reader))).status_code == 403

    # The database holds the hash, never the token.
    stored = rows(node, ApiToken)
    assert {row.token_sha256 for row in stored} == {
        hashlib.sha256(t.encode()).hexdigest() for t in (reader, staff, admin)
    }
    dumped = json.dumps([row.model_dump(mode="json") for row in stored])
    assert not any(token in dumped for token in (reader, staff, admin))
    listing = await node.get(TOKENS, headers=ADMIN)
    assert {item["role"] for item in listing.json()["items"]} == {"reader", "staff", "admin"}
    assert "token" not in listing.json()["items"][0] and staff not in listing.text

    # Revoked: refused at once, for writes and reads alike.
    staff_id = next(row.id for row in stored if row.role == "staff")
    assert (await node.delete(f"{TOKENS}/{staff_id}", headers=ADMIN)).status_code == 200
    assert (await node.delete(f"{TOKENS}/{staff_id}", headers=ADMIN)).status_code == 410
    refused = await node.post(ACHIEVEMENTS, json=achievement_body(), headers=bearer(staff))
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert (await node.get(ACHIEVEMENTS, headers=bearer(staff))).status_code == 401
    assert (await node.get(TOKENS, headers=ADMIN, params={"include_revoked": True})).json()[
        "items"
    ][1]["revoked_at"]
    assert (await node.get(ACHIEVEMENTS, headers=bearer("ctta_made-up-token"))).status_code == 401


async def test_visibility_needs_the_right_token(node) -> None:
    reader = bearer((await issue(node, "reader"))["token"])
    ids = {}
    for visibility in ("public", "alliance", "private"):
        response = await node.post(
            ACHIEVEMENTS, json=achievement_body(visibility=visibility), headers=STAFF
        )
        ids[visibility] = response.json()["id"]

    async def visible(headers: dict[str, str]) -> set[str]:
        page = (await node.get(ACHIEVEMENTS, headers=headers)).json()
        return {item["id"] for item in page["items"]}

    assert await visible({}) == {ids["public"]}
    assert await visible(reader) == {ids["public"], ids["alliance"]}
    assert await visible(STAFF) == set(ids.values())
    assert (await node.get(f"{ACHIEVEMENTS}/{ids['alliance']}")).status_code == 404
    alliance = await node.get(f"{ACHIEVEMENTS}/{ids['alliance']}", headers=reader)
    assert alliance.status_code == 200 and alliance.json()["private"] is None
    assert (await node.get(f"{ACHIEVEMENTS}/{ids['private']}", headers=reader)).status_code == 404
    private = await node.get(f"{ACHIEVEMENTS}/{ids['private']}", headers=STAFF)
    assert private.json()["private"]["contact_email"] == "wang@example.cn"
    filtered = await node.get(ACHIEVEMENTS, headers=reader, params={"visibility": "private"})
    assert filtered.json()["items"] == []


async def test_audit_log_names_the_actor_of_every_change(node) -> None:
    staff = await issue(node, "staff", "desk officer")
    headers = bearer(staff["token"])
    created = (await node.post(ACHIEVEMENTS, json=achievement_body(), headers=headers)).json()
    url = f"{ACHIEVEMENTS}/{created['id']}"
    body = achievement_body(version=1, private={"notes": "secret-in-audit-check"})
    assert (await node.put(url, json=body, headers=headers)).status_code == 200
    assert (await node.delete(url, params={"version": 2}, headers=STAFF)).status_code == 200

    assert (await node.get("/api/v1/audit", headers=headers)).status_code == 403
    response = await node.get("/api/v1/audit", params={"entity_id": created["id"]}, headers=ADMIN)
    assert response.status_code == 200, response.text
    entries = response.json()["items"]
    assert [(e["action"], e["version"]) for e in entries] == [
        ("withdraw", 3),
        ("update", 2),
        ("create", 1),
    ], "newest first"
    assert {e["kind"] for e in entries} == {"achievement"}
    assert entries[2]["actor_token_id"] == staff["id"]
    assert (entries[2]["actor_label"], entries[2]["actor_role"]) == ("desk officer", "staff")
    assert entries[0]["actor_token_id"] is None
    assert entries[0]["actor_label"].startswith("settings token ")

    token_entries = (
        await node.get("/api/v1/audit", params={"kind": "token"}, headers=ADMIN)
    ).json()
    assert [(e["action"], e["entity_id"], e["actor_role"]) for e in token_entries["items"]] == [
        ("create", staff["id"], "admin")
    ]
    first = await node.get("/api/v1/audit", params={"limit": 2}, headers=ADMIN)
    rest = await node.get(
        "/api/v1/audit", params={"cursor": first.json()["next_cursor"]}, headers=ADMIN
    )
    assert len(first.json()["items"]) == 2 and len(rest.json()["items"]) == 2
    assert "secret-in-audit-check" not in json.dumps(
        [row.model_dump(mode="json") for row in rows(node, AuditEntry)]
    )


def oversized_event_body(**extra: Any) -> dict[str, Any]:
    """Under the request limit, but over the event limit once published.

    Control characters are one character each for the protocol's length limits but six
    bytes (`\\u0001`) in the event's JSON.
    """
    long, short = "\x01" * 19_990, "\x01" * 1_990
    return achievement_body(
        description={"zh": "说明" + long, "en": "About" + long},
        summary={"zh": "摘要" + short, "en": "Summary" + short},
        applications={"zh": "用途" + short, "en": "Uses" + short},
        advantages={"zh": "优点" + short, "en": "Pros" + short},
        **extra,
    )


async def test_an_event_over_the_hub_limit_is_refused_and_nothing_is_written(node) -> None:
    body = oversized_event_body()
    assert len(json.dumps(body)) < node.app.state.settings.max_request_bytes
    response = await node.post(ACHIEVEMENTS, json=body, headers=STAFF)
    assert response.status_code == 413, response.text[:300]
    assert str(MAX_EVENT_BYTES) in response.json()["detail"]
    assert rows(node, Record) == [] and rows(node, OutboxEvent) == []
    assert rows(node, AuditEntry) == []

    created = (await node.post(ACHIEVEMENTS, json=achievement_body(), headers=STAFF)).json()
    update = await node.put(
        f"{ACHIEVEMENTS}/{created['id']}", json=oversized_event_body(version=1), headers=STAFF
    )
    assert update.status_code == 413
    [record] = rows(node, Record)
    assert record.version == 1 and record.content["description"] is None
    assert [row.record_version for row in rows(node, OutboxEvent)] == [1]
    assert [row.action for row in rows(node, AuditEntry)] == ["create"]


async def test_request_size_limit_with_and_without_content_length(make_node) -> None:
    app = make_node(max_request_bytes=4096)
    async with serving(app) as node:
        node.app = app  # type: ignore[attr-defined]
        big = achievement_body(description={"en": "x" * 8000})
        declared = await node.post(ACHIEVEMENTS, json=big, headers=STAFF)
        assert declared.status_code == 413
        assert "4096 bytes" in declared.json()["detail"]

        async def chunks() -> AsyncIterator[bytes]:
            payload = json.dumps(big).encode()
            for start in range(0, len(payload), 1000):
                yield payload[start : start + 1000]

        streamed = await node.post(
            ACHIEVEMENTS, content=chunks(), headers={**STAFF, "Content-Type": "application/json"}
        )
        assert streamed.status_code == 413, streamed.text
        assert rows(node, Record) == [] and rows(node, OutboxEvent) == []
        small = await node.post(ACHIEVEMENTS, json=achievement_body(), headers=STAFF)
        assert small.status_code == 201


async def test_writes_beyond_the_burst_get_429_with_retry_after(make_node) -> None:
    app = make_node(write_rate_per_second=0.5, write_burst=3)
    async with serving(app) as node:
        for _ in range(3):
            response = await node.post(ACHIEVEMENTS, json=achievement_body(), headers=STAFF)
            assert response.status_code == 201
        limited = await node.post(ACHIEVEMENTS, json=achievement_body(), headers=STAFF)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "2"
        assert "too many writes" in limited.json()["detail"]
        assert (await node.get(ACHIEVEMENTS, headers=STAFF)).status_code == 200, "reads are free"
        # The client's address is charged too: tokens are not verified before the limit,
        # so another token, or a made-up one per request, does not buy a fresh bucket.
        other = await node.post(ACHIEVEMENTS, json=achievement_body(), headers=ADMIN)
        assert other.status_code == 429
        made_up = {"Authorization": "Bearer made-up-token-0123456789"}
        assert (await node.post(ACHIEVEMENTS, json={}, headers=made_up)).status_code == 429


async def test_private_detail_never_leaves_the_node(federation, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    marker = "PRIVATE-MARKER-7f3a9c"
    eastern = federation.nodes["eastern"]
    body = achievement_body(
        private={"contact_name": marker, "contact_email": "x@example.cn", "notes": marker}
    )
    created = (await eastern.post(ACHIEVEMENTS, json=body, headers=STAFF)).json()
    update = achievement_body(version=1, private={"notes": f"{marker} second"})
    assert (
        await eastern.put(f"{ACHIEVEMENTS}/{created['id']}", json=update, headers=STAFF)
    ).status_code == 200

    async def indexed() -> Any:
        record = await federation.hub.get(
            f"/api/v1/records/eastern/achievement/{created['id']}", headers=STAFF
        )
        return record if record.status_code == 200 and record.json()["version"] == 2 else None

    hub_responses = [await eventually(indexed)]
    hub_responses.append(await federation.hub.get("/api/v1/search", params={"q": "锂电池"}))
    assert hub_responses[1].json()["hits"]
    hub_responses.append(await federation.hub.get("/api/v1/matches", headers=STAFF))
    for response in hub_responses:
        assert marker not in response.text

    engine = federation.node_apps["eastern"].state.engine
    with Session(engine) as session:
        events = list(session.exec(select(OutboxEvent)))
        entries = list(session.exec(select(AuditEntry)))
    assert len(events) == 2
    for event in events:
        assert marker not in event.body.decode() and marker not in json.dumps(event.headers)
    assert marker not in json.dumps([entry.model_dump(mode="json") for entry in entries])
    assert caplog.records, "logging was captured"
    for line in caplog.records:
        assert marker not in line.getMessage()
    # Last, because the test client logs the URL it asks for.
    by_marker = await federation.hub.get("/api/v1/search", params={"q": marker})
    assert by_marker.status_code == 200 and by_marker.json()["hits"] == []


def test_migration_creates_the_security_tables_as_modelled(tmp_path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine, MIGRATIONS)
    inspector = inspect(engine)
    for model in (ApiToken, AuditEntry):
        table = model.__table__  # type: ignore[attr-defined]
        assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.columns.keys())
    unique = inspector.get_unique_constraints("api_token") + [
        index for index in inspector.get_indexes("api_token") if index["unique"]
    ]
    assert any(entry["column_names"] == ["token_sha256"] for entry in unique)
