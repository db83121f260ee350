"""End to end: two centres' nodes and the hub in one process on a real nats-server."""

from __future__ import annotations

import json

import nats
import pytest
from sqlmodel import Session, select

from ctta.protocol.envelope import build_event
from ctta.protocol.signing import SigningKey
from ctta.protocol.subjects import record_subject
from ctta.protocol.taxonomy import RecordKind
from ctta.server.deadletters import DeadLetter
from tests.support import STAFF, Federation, achievement_body, demand_body, eventually


async def test_record_flows_from_node_to_hub_search(federation: Federation) -> None:
    created = (
        await federation.nodes["eastern"].post(
            "/api/v1/achievements", json=achievement_body(), headers=STAFF
        )
    ).json()

    async def found() -> bool:
        return created["id"] in await federation.search_ids(q="电池")

    await eventually(found)
    hit = (await federation.search(q="电池"))["hits"][0]
    assert (hit["kind"], hit["centre"], hit["id"], hit["version"]) == (
        "achievement",
        "eastern",
        created["id"],
        1,
    )
    assert created["id"] in await federation.search_ids(q="lithium recycling")
    record = (
        await federation.hub.get(f"/api/v1/records/eastern/achievement/{created['id']}")
    ).json()
    assert record["title"]["zh"] == "锂电池回收再利用技术"
    assert "private" not in record and "wang@example.cn" not in json.dumps(record)


async def test_update_replaces_and_withdrawal_removes(federation: Federation) -> None:
    node = federation.nodes["southern"]
    created = (await node.post("/api/v1/demands", json=demand_body(), headers=STAFF)).json()
    await eventually(lambda: _has(federation, created["id"], q="热管理"))
    body = demand_body(
        title={"zh": "氢燃料电池客车储氢瓶", "en": "Hydrogen tanks for buses"}, version=1
    )
    assert (
        await node.put(f"/api/v1/demands/{created['id']}", json=body, headers=STAFF)
    ).status_code == 200
    await eventually(lambda: _has(federation, created["id"], q="储氢"))
    assert created["id"] not in await federation.search_ids(q="热管理"), "the old text is gone"
    hit = (await federation.search(q="储氢"))["hits"][0]
    assert hit["version"] == 2
    assert (await node.delete(f"/api/v1/demands/{created['id']}", headers=STAFF)).status_code == 200

    async def gone() -> bool:
        return created["id"] not in await federation.search_ids(q="储氢")

    await eventually(gone)
    missing = await federation.hub.get(f"/api/v1/records/southern/demand/{created['id']}")
    assert missing.status_code == 404


async def test_facets_and_filters_span_centres(federation: Federation) -> None:
    await federation.nodes["eastern"].post(
        "/api/v1/achievements", json=achievement_body(trl=4), headers=STAFF
    )
    await federation.nodes["southern"].post(
        "/api/v1/achievements", json=achievement_body(trl=8), headers=STAFF
    )
    await federation.nodes["southern"].post(
        "/api/v1/demands", json=demand_body(title={"en": "Battery cooling"}), headers=STAFF
    )

    async def all_three() -> bool:
        return (await federation.search())["total"] == 3

    await eventually(all_three)
    page = await federation.search(q="battery")
    assert page["facets"]["centre"] == {"eastern": 1, "southern": 2}
    assert page["facets"]["kind"] == {"achievement": 2, "demand": 1}
    assert (await federation.search(q="battery", kind="demand"))["total"] == 1
    assert (await federation.search(trl_min=6, kind="achievement"))["facets"]["centre"] == {
        "southern": 1
    }
    assert (await federation.search(centre="eastern"))["total"] == 1
    assert (await federation.search(field="energy-storage"))["total"] == 2


async def test_alliance_records_need_a_reader_token(federation: Federation) -> None:
    created = (
        await federation.nodes["eastern"].post(
            "/api/v1/achievements", json=achievement_body(visibility="alliance"), headers=STAFF
        )
    ).json()

    async def visible_to_members() -> bool:
        response = await federation.hub.get("/api/v1/search", params={"q": "电池"}, headers=STAFF)
        return created["id"] in {hit["id"] for hit in response.json()["hits"]}

    await eventually(visible_to_members)
    assert created["id"] not in await federation.search_ids(q="电池")
    url = f"/api/v1/records/eastern/achievement/{created['id']}"
    assert (await federation.hub.get(url)).status_code == 404
    assert (await federation.hub.get(url, headers=STAFF)).status_code == 200


async def test_centres_show_liveness_counts_and_lag(federation: Federation) -> None:
    await federation.nodes["eastern"].post(
        "/api/v1/achievements", json=achievement_body(), headers=STAFF
    )

    async def eastern_state() -> dict | None:
        centres = {c["id"]: c for c in (await federation.hub.get("/api/v1/centres")).json()}
        eastern = centres["eastern"]
        return eastern if eastern["alive"] and eastern["counts"] == {"achievement": 1} else None

    eastern = await eventually(eastern_state)
    assert eastern["node_counts"] == {"achievement": 1}
    assert eastern["lag_seconds"] is not None and eastern["last_event_at"] is not None
    centres = {c["id"]: c for c in (await federation.hub.get("/api/v1/centres")).json()}
    assert len(centres) == 11 and not centres["ocean"]["alive"]
    status = (await federation.nodes["eastern"].get("/api/v1/federation/status")).json()
    assert status["nats"] == "connected" and status["outbox_backlog"] == 0


def _dead_letters(federation: Federation) -> list[DeadLetter]:
    with Session(federation.hub_app.state.engine) as session:
        return list(session.exec(select(DeadLetter).order_by(DeadLetter.id)))


async def _has(federation: Federation, record_id: str, **params) -> bool:
    return record_id in await federation.search_ids(**params)


async def test_forged_and_malformed_events_are_dead_lettered(
    federation: Federation, federation_keys: dict[str, SigningKey]
) -> None:
    """Each bad event lands in the dead-letter table with its reason; none reaches the index."""
    eastern = (
        await federation.nodes["eastern"].post(
            "/api/v1/achievements", json=achievement_body(), headers=STAFF
        )
    ).json()
    await eventually(lambda: _has(federation, eastern["id"]))
    # Version 2, so that version 1 is older: the same version again is a no-op, not stale.
    assert (
        await federation.nodes["eastern"].put(
            f"/api/v1/achievements/{eastern['id']}",
            json=achievement_body(version=1),
            headers=STAFF,
        )
    ).status_code == 200
    record_url = f"/api/v1/records/eastern/achievement/{eastern['id']}"

    async def at_version_2() -> bool:
        return (await federation.hub.get(record_url)).json().get("version") == 2

    await eventually(at_version_2)
    published = (await federation.hub.get(record_url)).json()
    forged_data = {**published, "title": {"en": "Forged title"}, "version": 5}
    subject = record_subject("eastern", RecordKind.ACHIEVEMENT, eastern["id"])

    def event(key: SigningKey, centre: str = "eastern", version: int = 5, data: dict | None = None):
        return build_event(
            nats_subject=subject,
            centre=centre,
            event_type="org.ctta.achievement.upserted.v1",
            ce_subject=f"achievement/{eastern['id']}",
            version=version,
            data=data if data is not None else {**forged_data, "version": version},
            dataschema="http://hub/api/v1/schemas/achievement.json",
            signing_key=key,
        )

    southern_signs_as_southern = event(federation_keys["southern"], centre="southern")
    southern_signs_as_eastern = event(federation_keys["southern"])
    rogue = event(SigningKey.generate("eastern#rogue"))
    tampered = event(federation_keys["eastern"])
    stale = event(
        federation_keys["eastern"],
        version=1,
        data={**published, "version": 1, "title": {"en": "Forged title"}},
    )
    bad_schema = event(federation_keys["eastern"], data={**forged_data, "trl": 42})
    private = event(federation_keys["eastern"], data={**forged_data, "visibility": "private"})
    cases = [
        (
            southern_signs_as_southern.headers,
            southern_signs_as_southern.body,
            "differs from ce-centre",
        ),
        (
            southern_signs_as_eastern.headers,
            southern_signs_as_eastern.body,
            "belongs to 'southern'",
        ),
        (rogue.headers, rogue.body, "not in the federation registry"),
        (
            tampered.headers,
            json.dumps({**forged_data, "title": {"en": "Other"}}).encode(),
            "bad signature",
        ),
        (stale.headers, stale.body, "stale version 1"),
        (bad_schema.headers, bad_schema.body, "schema: trl"),
        (private.headers, private.body, "private record must never be published"),
        (event(federation_keys["eastern"]).headers, b"{not json", "not JSON"),
        ({"content-type": "application/json"}, b"{}", "no ce-* headers"),
    ]
    nc = await nats.connect(federation.nats.url)
    js = nc.jetstream()
    # One at a time: the stream keeps only the newest few messages per subject, so a burst
    # on one subject could be trimmed before the hub reads it (by design: newest state wins).
    for count, (headers, body, _) in enumerate(cases, start=1):
        await js.publish(subject, body, headers=headers)

        async def dead(count: int = count) -> bool:
            return len(_dead_letters(federation)) == count

        await eventually(dead)
    await nc.close()
    reasons = [letter.reason for letter in _dead_letters(federation)]
    for (_, _, expected), reason in zip(cases, reasons, strict=True):
        assert expected in reason, (expected, reason)
    hit = (await federation.search(q="电池"))["hits"][0]
    assert hit["version"] == 2 and hit["title"]["zh"] == "锂电池回收再利用技术"
    assert (await federation.search(q="forged"))["total"] == 0
    listed = (
        await federation.hub.get("/api/v1/dead-letters", params={"limit": 3}, headers=STAFF)
    ).json()
    assert len(listed) == 3 and listed[0]["reason"] == reasons[-1]

    later = (
        await federation.nodes["eastern"].post(
            "/api/v1/achievements",
            json=achievement_body(title_en="After the attack"),
            headers=STAFF,
        )
    ).json()
    await eventually(lambda: _has(federation, later["id"], q="attack")), "the consumer keeps going"


@pytest.mark.parametrize("kind", ["professionals", "cases"])
async def test_every_kind_reaches_the_hub(federation: Federation, kind: str) -> None:
    bodies = {
        "professionals": {
            "title": {"zh": "技术经理人"},
            "summary": {"zh": "电池方向"},
            "name": {"zh": "李娜"},
        },
        "cases": {
            "title": {"en": "Separator licence"},
            "summary": {"en": "电池隔膜许可"},
            "contract_type": "licence",
            "centres_involved": ["eastern", "southern"],
        },
    }
    created = (
        await federation.nodes["eastern"].post(f"/api/v1/{kind}", json=bodies[kind], headers=STAFF)
    ).json()
    await eventually(lambda: _has(federation, created["id"], q="电池"))
