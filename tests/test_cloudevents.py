"""CloudEvents conformance: real published events round-trip through the official SDK."""

from __future__ import annotations

import json
from datetime import datetime

import nats
from cloudevents.core.formats.json import JSONFormat
from nats.js.api import RawStreamMsg

from ctta.protocol.envelope import check_provenance, from_structured, parse_event, to_structured
from tests.support import STAFF, Federation, achievement_body, eventually


async def published_achievement(federation: Federation) -> tuple[dict, RawStreamMsg]:
    """Create an achievement at eastern; return it and its event as stored in the stream."""
    created = (
        await federation.nodes["eastern"].post(
            "/api/v1/achievements", json=achievement_body(), headers=STAFF
        )
    ).json()
    await eventually(lambda: _indexed(federation, created["id"]))
    nc = await nats.connect(federation.nats.url)
    try:
        message = await nc.jetstream().get_last_msg(
            "CTTA_EVENTS", f"ctta.v1.evt.eastern.achievement.{created['id']}"
        )
    finally:
        await nc.close()
    return created, message


async def test_published_events_round_trip_through_the_sdk(federation: Federation) -> None:
    created, message = await published_achievement(federation)
    ours = parse_event(message.subject, message.headers, message.data)

    sdk_event = JSONFormat().read(None, json.dumps(to_structured(ours)).encode())
    assert sdk_event.get_specversion() == "1.0"
    assert sdk_event.get_id() == message.headers["Nats-Msg-Id"]
    assert sdk_event.get_source() == "urn:ctta:centre:eastern"
    assert sdk_event.get_type() == "org.ctta.achievement.upserted.v1"
    assert sdk_event.get_subject() == f"achievement/{created['id']}"
    assert isinstance(sdk_event.get_time(), datetime) and sdk_event.get_time() == ours.envelope.time
    assert sdk_event.get_datacontenttype() == "application/json"
    assert sdk_event.get_dataschema().endswith("/api/v1/schemas/achievement.json")
    assert sdk_event.get_extension("centre") == "eastern"
    assert sdk_event.get_extension("sequence") == "000000000001"
    assert sdk_event.get_extension("sequencetype") == "Integer"
    assert sdk_event.get_extension("keyid") == "eastern#test"
    assert sdk_event.get_data() == ours.data

    written = json.loads(JSONFormat().write(sdk_event))
    back = from_structured(message.subject, written)
    assert back.envelope == ours.envelope and back.data == ours.data
    check_provenance(back, federation.hub_app.state.registry)


async def _indexed(federation: Federation, record_id: str) -> bool:
    return record_id in await federation.search_ids()


async def test_every_event_names_a_schema_the_hub_serves(federation: Federation) -> None:
    """`ce-dataschema` is a hub URL; the schema there describes the event's data."""
    _, message = await published_achievement(federation)
    path = message.headers["ce-dataschema"].split("://", 1)[1].split("/", 1)[1]
    schema = (await federation.hub.get(f"/{path}")).json()
    data = json.loads(message.data)
    assert set(schema["required"]) <= set(data) and set(data) <= set(schema["properties"])
    assert (await federation.hub.get("/api/v1/schemas/nonsense.json")).status_code == 404
