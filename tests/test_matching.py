"""Cross-regional matching with the real encoder, nats-server and stores."""

from __future__ import annotations

import asyncio
import contextlib

import nats
import numpy as np
import pytest
from sqlmodel import Session

from ctta.deploy.local import serving
from ctta.deploy.natsserver import NatsServer
from ctta.hub.app import create_app as create_hub
from ctta.hub.matching.encoder import UseEncoder
from ctta.hub.matching.engine import HybridEngine
from ctta.hub.matching.indexes import DenseIndex
from ctta.hub.matching.service import live_records, match_doc
from ctta.hub.matching.worker import Change
from ctta.node.app import create_app as create_node
from ctta.protocol.envelope import build_event
from ctta.protocol.matches import RESPONSE_TYPE
from ctta.protocol.subjects import response_subject
from tests.support import (
    STAFF,
    Federation,
    achievement_body,
    bus_battery_offer,
    demand_body,
    eventually,
    provision,
)

BATTERY_ZH = {"zh": "动力锂电池热失控预警与液冷热管理系统", "en": None}


def _achievement(centre: str, record_id: str, **extra) -> dict:
    body = achievement_body(**extra)
    body.pop("private")
    return {**body, "kind": "achievement", "centre": centre, "id": record_id, "version": 1}


def _demand(centre: str, record_id: str, **extra) -> dict:
    return {
        **demand_body(**extra),
        "kind": "demand",
        "centre": centre,
        "id": record_id,
        "version": 1,
    }


@pytest.fixture(scope="module")
def encoder() -> UseEncoder:
    return UseEncoder()


def _engine(encoder: UseEncoder, *records: dict) -> HybridEngine:
    engine = HybridEngine(encoder.dimensions)
    docs = [match_doc(r) for r in records]
    for doc, vector in zip(docs, encoder.encode([d.embed_text for d in docs]), strict=True):
        engine.upsert(doc, vector)
    return engine


def _match(engine: HybridEngine, encoder: UseEncoder, record: dict) -> list:
    doc = match_doc(record)
    return engine.match(doc, encoder.encode([doc.embed_text])[0], 5)


A1, A2, A3, D1 = (
    "01JA0C2E8R5T7V9X1Z3B5D7FA1",
    "01JA0C2E8R5T7V9X1Z3B5D7FA2",
    "01JA0C2E8R5T7V9X1Z3B5D7FA3",
    "01JA0C2E8R5T7V9X1Z3B5D7FD1",
)


def test_english_demand_finds_a_chinese_achievement(encoder: UseEncoder) -> None:
    engine = _engine(
        encoder,
        _achievement(
            "eastern",
            A1,
            title=BATTERY_ZH,
            summary={"zh": "面向电动客车的电池包液冷与热失控早期预警。"},
            keywords=[],
            fields=["energy-storage"],
        ),
        _achievement(
            "ocean",
            A2,
            title={"zh": "深海养殖网箱防腐涂层"},
            summary={"zh": "海洋环境长效防腐。"},
            keywords=[],
            fields=["marine"],
        ),
    )
    demand = _demand(
        "zhengzhou",
        D1,
        title={"en": "Battery thermal management for electric buses"},
        summary={"en": "Liquid cooling and early warning of thermal runaway in battery packs."},
        problem_statement={"en": "Range drops in winter"},
        fields=["energy-storage"],
        min_trl=None,
    )
    best = _match(engine, encoder, demand)[0]
    assert best.achievement.id == A1
    assert best.explanation.semantic_rank == 1 and best.explanation.semantic_similarity > 0.3
    assert best.explanation.fields_shared == ["energy-storage"] and not best.explanation.local


def test_chinese_demand_finds_an_english_achievement(encoder: UseEncoder) -> None:
    engine = _engine(
        encoder,
        _achievement(
            "southern",
            A1,
            title={"en": "Machine vision inspection of weld seams"},
            summary={"en": "Deep-learning defect detection for welded steel structures."},
            keywords=[],
        ),
        _achievement(
            "sunan",
            A2,
            title={"en": "Graphene thermal film"},
            summary={"en": "Heat spreading film."},
            keywords=[],
        ),
    )
    demand = _demand(
        "ocean",
        D1,
        title={"zh": "船体焊缝机器视觉缺陷检测"},
        summary={"zh": "需要自动识别焊接缺陷。"},
        problem_statement={"zh": "人工检测效率低"},
        min_trl=None,
    )
    assert _match(engine, encoder, demand)[0].achievement.id == A1


def test_two_character_chinese_terms_match_and_are_explained(encoder: UseEncoder) -> None:
    engine = _engine(
        encoder, _achievement("eastern", A1, title={"zh": "高镍三元锂电池正极材料"}, keywords=[])
    )
    demand = _demand(
        "southern",
        D1,
        title={"zh": "电池"},
        summary={"zh": "电池"},
        problem_statement={"zh": "电池"},
        min_trl=None,
    )
    proposal = _match(engine, encoder, demand)[0]
    assert proposal.explanation.lexical_rank == 1 and "电池" in proposal.explanation.shared_terms


def test_minimum_trl_excludes_an_otherwise_perfect_match(encoder: UseEncoder) -> None:
    perfect = _achievement(
        "eastern",
        A1,
        title={"zh": "电动客车电池热管理", "en": "Battery thermal management for electric buses"},
        trl=4,
    )
    ready = _achievement("central", A2, title={"en": "Battery cooling plates"}, trl=7)
    engine = _engine(encoder, perfect, ready)
    proposals = _match(engine, encoder, _demand("zhengzhou", D1, min_trl=6))
    assert [p.achievement.id for p in proposals] == [A2]
    assert proposals[0].explanation.trl == "TRL 7 meets the minimum 6"


def test_same_centre_pairs_rank_below_and_are_labelled(encoder: UseEncoder) -> None:
    title = {"zh": "电动客车电池热管理", "en": "Battery thermal management for electric buses"}
    engine = _engine(
        encoder,
        _achievement("zhengzhou", A1, title=title),
        _achievement("eastern", A2, title=title),
    )
    proposals = _match(engine, encoder, _demand("zhengzhou", D1))
    assert [p.achievement.id for p in proposals] == [A2, A1]
    assert proposals[1].explanation.local and not proposals[0].explanation.local


async def _inbox(federation: Federation, centre: str, **params) -> list[dict]:
    response = await federation.nodes[centre].get("/api/v1/matches", params=params, headers=STAFF)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_proposals_are_routed_answered_and_retracted(
    federation: Federation, federation_keys
) -> None:
    eastern, southern = federation.nodes["eastern"], federation.nodes["southern"]
    offer = (
        await eastern.post(
            "/api/v1/achievements",
            headers=STAFF,
            json=bus_battery_offer(),
        )
    ).json()
    need = (await southern.post("/api/v1/demands", headers=STAFF, json=demand_body())).json()

    async def routed_to_both() -> list[dict] | None:
        east, south = await _inbox(federation, "eastern"), await _inbox(federation, "southern")
        return east if east and south and east[0]["id"] == south[0]["id"] else None

    [match] = await eventually(routed_to_both, timeout=20)
    assert match["demand"] == {"centre": "southern", "id": need["id"]}
    assert match["achievement"] == {"centre": "eastern", "id": offer["id"]}
    assert match["explanation"]["fields_shared"] == ["new-energy-vehicles"]
    assert match["titles"]["achievement"]["en"].startswith("Liquid-cooled")
    hub_matches = (await federation.hub.get("/api/v1/matches", headers=STAFF)).json()
    assert [m["id"] for m in hub_matches] == [match["id"]]

    url = f"/api/v1/matches/{match['id']}/response"
    early = await eastern.post(url, headers=STAFF, json={"stage": "nda"})
    assert early.status_code == 409 and "next stages: accepted, declined" in early.json()["detail"]
    no_reason = await southern.post(url, headers=STAFF, json={"stage": "declined"})
    assert no_reason.status_code == 409 and "reason code" in no_reason.json()["detail"]
    assert (await eastern.post(url, headers=STAFF, json={"stage": "accepted"})).status_code == 200
    assert (await eastern.post(url, headers=STAFF, json={"stage": "contacted"})).status_code == 200
    declined = await southern.post(
        url, headers=STAFF, json={"stage": "declined", "reason": "price"}
    )
    assert declined.status_code == 200 and declined.json()["reason"] == "price"

    async def hub_state() -> dict | None:
        [row] = (await federation.hub.get("/api/v1/matches", headers=STAFF)).json()
        return (
            row
            if (row["achievement_stage"], row["demand_stage"]) == ("contacted", "declined")
            else None
        )

    await eventually(hub_state)

    # A centre that is not a party cannot answer, even with a valid signature of its own.
    forged = build_event(
        nats_subject=response_subject("ocean", match["id"]),
        centre="ocean",
        event_type=RESPONSE_TYPE,
        ce_subject=f"response/{match['id']}",
        version=1,
        data={
            "match_id": match["id"],
            "centre": "ocean",
            "sequence": 1,
            "stage": "accepted",
            "previous_stage": "proposed",
            "responded_at": "2026-11-24T10:00:00Z",
        },
        dataschema="http://hub/api/v1/schemas/response.json",
        signing_key=federation_keys["ocean"],
    )
    nc = await nats.connect(federation.nats.url)
    await nc.jetstream().publish(forged.subject, forged.body, headers=forged.headers)
    await nc.close()

    async def refused() -> bool:
        letters = (await federation.hub.get("/api/v1/dead-letters", headers=STAFF)).json()
        return any("not a party" in letter["reason"] for letter in letters)

    await eventually(refused)

    assert (
        await southern.delete(f"/api/v1/demands/{need['id']}", headers=STAFF)
    ).status_code == 200

    async def retracted() -> bool:
        return [m["status"] for m in await _inbox(federation, "eastern")] == ["retracted"]

    await eventually(retracted)
    gone = await eastern.post(url, headers=STAFF, json={"stage": "nda"})
    assert gone.status_code == 409 and "retracted" in gone.json()["detail"]


async def test_preview_ranks_without_publishing(federation: Federation) -> None:
    offers = [
        achievement_body(title_zh="锂电池回收再利用技术", title_en=None),
        achievement_body(
            title_zh="深海网箱防腐涂层",
            title_en=None,
            summary={"zh": "海洋环境长效防腐。"},
            keywords=["防腐"],
            fields=["marine"],
            ipc=["C09D 5/08"],
        ),
    ]
    for body in offers:
        await federation.nodes["eastern"].post("/api/v1/achievements", headers=STAFF, json=body)

    async def indexed() -> bool:
        return (await federation.search(kind="achievement"))["total"] == 2

    await eventually(indexed)
    demand = demand_body(title={"en": "Recycling of lithium batteries"}, min_trl=None)
    demand.pop("private", None)

    async def ranked() -> list[dict] | None:
        response = await federation.hub.post(
            "/api/v1/matches/preview",
            json={"kind": "demand", "centre": "ocean", "demand": demand},
            headers=STAFF,
        )
        assert response.status_code == 200, response.text
        hits = response.json()
        return hits if len(hits) == 2 else None

    hits = await eventually(ranked, timeout=20)
    assert hits[0]["title"]["zh"] == "锂电池回收再利用技术"
    assert hits[0]["score"] > hits[1]["score"] and "explanation" in hits[0]
    assert (await federation.hub.get("/api/v1/matches", headers=STAFF)).json() == [], (
        "preview proposes nothing"
    )
    bad = await federation.hub.post(
        "/api/v1/matches/preview", json={"kind": "demand"}, headers=STAFF
    )
    assert (await federation.hub.post("/api/v1/matches/preview", json={})).status_code == 401
    assert bad.status_code == 422


async def test_replay_does_not_duplicate_proposals(federation: Federation) -> None:
    await federation.nodes["eastern"].post(
        "/api/v1/achievements",
        headers=STAFF,
        json=achievement_body(
            title_zh="电动客车动力电池液冷热管理系统", fields=["new-energy-vehicles"], trl=7
        ),
    )
    await federation.nodes["southern"].post("/api/v1/demands", headers=STAFF, json=demand_body())
    await eventually(lambda: _inbox(federation, "southern"), timeout=20)
    matcher = federation.hub_app.state.matcher
    before = (await federation.hub.get("/api/v1/matches", headers=STAFF)).json()
    # Feed every indexed record to the matcher again, as a replay of the stream would.
    with Session(federation.hub_app.state.engine) as session:
        records = live_records(session)
    embedded = matcher.state.embedded
    matcher.notify([Change(match_doc(data).key, data["version"], data) for data in records])

    async def rescored() -> bool:
        return matcher.state.embedded == embedded + len(records) and matcher.state.pending == 0

    await eventually(rescored)
    await asyncio.sleep(0.5)  # let the relay publish anything the replay might have queued
    nc = await nats.connect(federation.nats.url)
    info = await nc.jetstream().stream_info("CTTA_ROUTES")
    await nc.close()
    after = (await federation.hub.get("/api/v1/matches", headers=STAFF)).json()
    assert [(m["id"], m["revision"]) for m in after] == [(m["id"], m["revision"]) for m in before]
    assert info.state.messages == 2, "one route per centre, never repeated"
    assert len(await _inbox(federation, "southern")) == 1


def test_dense_index_switches_to_hnsw_past_its_threshold() -> None:
    """Exact search up to the threshold, HNSW beyond it, with the same filters and updates."""
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(3000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = DenseIndex(64, ann_threshold=10**9)
    approximate = DenseIndex(64, ann_threshold=2000, exact_below=100)
    for slot, vector in enumerate(vectors):
        exact.add(slot, vector)
        approximate.add(slot, vector)
    assert approximate.approximate and not exact.approximate
    for slot in range(0, 3000, 7):
        exact.remove(slot)
        approximate.remove(slot)
    allowed = np.zeros(3000, dtype=bool)
    allowed[::2] = True
    found = 0
    for query in vectors[:50]:
        truth = {slot for slot, _ in exact.search(query, allowed, 10)}
        hits = approximate.search(query, allowed, 10)
        assert all(allowed[slot] and slot % 7 for slot, _ in hits), "filters and removals hold"
        found += len(truth & {slot for slot, _ in hits})
    assert found / 500 >= 0.9, f"recall@10 {found / 500:.2f}"
    everything = np.ones(3001, dtype=bool)
    moved = -vectors[1]
    approximate.add(1, moved)  # an update after the switch replaces the vector...
    assert approximate.search(moved, everything, 1)[0][0] == 1
    ghosts = [s for s, similarity in approximate.search(vectors[1], everything, 10) if s == 1]
    assert ghosts == [], "...and leaves no copy of the old one in the graph"
    approximate.add(7, vectors[2000])  # a removed slot reused for another record
    [(slot, similarity)] = approximate.search(vectors[2000], everything, 1)
    assert slot in {7, 2000} and similarity > 0.99
    assert 7 not in {s for s, _ in approximate.search(vectors[7], everything, 10)}
    few = np.zeros(3001, dtype=bool)
    few[[10, 20, 30]] = True  # below exact_below: answered exactly
    assert {s for s, _ in approximate.search(vectors[10], few, 10)} == {10, 20, 30}


@pytest.mark.timeout(300)
async def test_work_a_stopped_matcher_left_is_done_after_a_restart(
    nats_server: NatsServer, node_settings, hub_settings
) -> None:
    """A stop between ingest and matching loses no proposal and no retraction: the hub
    indexes with its matcher off (as if killed before matching), then restarts with it."""
    await provision(nats_server.url)
    settings = hub_settings(nats_server.url)
    without_matcher = settings.model_copy(update={"matching": False})
    async with contextlib.AsyncExitStack() as nodes:
        clients = {
            c: await nodes.enter_async_context(
                serving(create_node(node_settings(c, nats_server.url)))
            )
            for c in ("eastern", "southern")
        }
        offer = (
            await clients["eastern"].post(
                "/api/v1/achievements", json=bus_battery_offer(), headers=STAFF
            )
        ).json()
        need = (
            await clients["southern"].post("/api/v1/demands", json=demand_body(), headers=STAFF)
        ).json()

        async def inbox(centre: str, status: str) -> list[dict]:
            response = await clients[centre].get(
                "/api/v1/matches", params={"status": status}, headers=STAFF
            )
            return response.json()["items"]

        hub_app = create_hub(without_matcher)
        async with serving(hub_app):
            await eventually(lambda: _at_least(hub_app.state.ingest, 2))
        assert await inbox("southern", "proposed") == []
        async with serving(create_hub(settings)):
            [proposed] = await eventually(lambda: inbox("southern", "proposed"), timeout=30)
            assert proposed["achievement"]["id"] == offer["id"]
            assert await eventually(lambda: inbox("eastern", "proposed"))
        withdrawn = await clients["southern"].delete(f"/api/v1/demands/{need['id']}", headers=STAFF)
        assert withdrawn.status_code == 200, withdrawn.text
        hub_app = create_hub(without_matcher)
        async with serving(hub_app):
            await eventually(lambda: _at_least(hub_app.state.ingest, 1))  # the tombstone
        assert await inbox("eastern", "retracted") == []
        async with serving(create_hub(settings)):
            [retracted] = await eventually(lambda: inbox("eastern", "retracted"), timeout=30)
            assert retracted["id"] == proposed["id"]


async def _at_least(ingest, count: int) -> bool:
    return ingest.indexed >= count
