"""Hostile events published straight onto the backbone end in the hub's dead-letter table.

tests/test_federation.py::test_forged_and_malformed_events_are_dead_lettered covers the
wrong-centre (subject ≠ ce-centre, another centre's key), badly signed (unknown key,
tampered body), malformed (not JSON, no ce-* headers), bad-schema and private cases. This
file adds what it does not: oversized, replayed (an older version after a newer one),
unsigned, a version no store can hold, a body that is not an object or not UTF-8, and a
lone surrogate; then checks the consumer still indexes a valid event.
"""

from __future__ import annotations

import nats
from nats.js import JetStreamContext
from sqlmodel import Session, col, select

from ctta.protocol import backbone
from ctta.protocol.envelope import (
    MAX_EVENT_BYTES,
    MSG_ID_HEADER,
    WireEvent,
    build_event,
    format_sequence,
)
from ctta.protocol.records import MAX_VERSION
from ctta.protocol.signing import SigningKey
from ctta.protocol.subjects import record_subject
from ctta.protocol.taxonomy import RecordKind
from ctta.server.deadletters import DeadLetter
from tests.support import STAFF, Federation, achievement_body, eventually


def _reasons(federation: Federation) -> list[str]:
    with Session(federation.hub_app.state.engine) as session:
        return list(session.exec(select(DeadLetter.reason).order_by(col(DeadLetter.id))))


async def _indexed_version(federation: Federation, record_id: str) -> int | None:
    response = await federation.hub.get(f"/api/v1/records/eastern/achievement/{record_id}")
    return response.json()["version"] if response.status_code == 200 else None


async def _first_event(js: JetStreamContext, subject: str) -> WireEvent:
    """The oldest message still kept on a subject: what an attacker could capture and replay."""
    info = await js.stream_info(backbone.EVENTS_STREAM)
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(backbone.EVENTS_STREAM, seq=seq)
        if msg.subject == subject:
            return WireEvent(subject=msg.subject, headers=dict(msg.headers or {}), body=msg.data)
    raise AssertionError(f"nothing on {subject}")


async def test_hostile_events_are_dead_lettered_and_ingest_goes_on(
    federation: Federation, federation_keys: dict[str, SigningKey]
) -> None:
    node = federation.nodes["eastern"]
    created = (
        await node.post("/api/v1/achievements", json=achievement_body(), headers=STAFF)
    ).json()
    record_id = created["id"]
    updated = await node.put(
        f"/api/v1/achievements/{record_id}",
        json=achievement_body(title_en="Second version", version=1),
        headers=STAFF,
    )
    assert updated.status_code == 200, updated.text

    async def at_version_two() -> bool:
        return await _indexed_version(federation, record_id) == 2

    await eventually(at_version_two)
    published = (
        await federation.hub.get(f"/api/v1/records/eastern/achievement/{record_id}")
    ).json()
    subject = record_subject("eastern", RecordKind.ACHIEVEMENT, record_id)
    eastern_key = federation_keys["eastern"]

    def signed(version: int, data: dict) -> WireEvent:
        return build_event(
            nats_subject=subject,
            centre="eastern",
            event_type="org.ctta.achievement.upserted.v1",
            ce_subject=f"achievement/{record_id}",
            version=version,
            data=data,
            dataschema="http://hub/api/v1/schemas/achievement.json",
            signing_key=eastern_key,
        )

    nc = await nats.connect(federation.nats.url)
    js = nc.jetstream()
    original = await _first_event(js, subject)
    assert original.headers["ce-sequence"] == format_sequence(1), "as the node sent it"
    # The same bytes again are dropped by the stream itself (duplicate window) ...
    assert (await js.publish(subject, original.body, headers=original.headers)).duplicate
    # ... so a replayer sends them under a new message id; the signature still holds.
    replayed = {**original.headers, MSG_ID_HEADER: "replay-of-" + original.event_id}

    valid = signed(3, {**published, "version": 3})
    oversized = signed(3, {**published, "version": 3, "advantages": ["x" * MAX_EVENT_BYTES]})
    unsigned = {k: v for k, v in valid.headers.items() if k != "ce-signature"}
    too_new = signed(MAX_VERSION + 1, {**published, "version": MAX_VERSION + 1})
    surrogate = valid.body.replace(b'"Second version"', b'"\\ud800"')
    assert surrogate != valid.body
    cases = [
        (original.body, replayed, "stale version 1; the index holds version 2"),
        (oversized.body, oversized.headers, f"the limit is {MAX_EVENT_BYTES}"),
        (valid.body, unsigned, "event is not signed"),
        (too_new.body, too_new.headers, "version: Input should be less than or equal to"),
        (b"[1, 2, 3]", valid.headers, "body must be a JSON object"),
        (b'{"title": "\xff\xfe"}', valid.headers, "body is not JSON"),
        (surrogate, valid.headers, "bad signature"),
        (valid.body, {**valid.headers, "ce-sequence": "three"}, "bad envelope: sequence"),
    ]
    # One at a time, as in test_federation: the stream keeps only a few messages per subject.
    for count, (body, headers, _) in enumerate(cases, start=1):
        await js.publish(subject, body, headers={**headers, MSG_ID_HEADER: f"hostile-{count}"})

        async def dead(count: int = count) -> bool:
            return len(_reasons(federation)) == count

        await eventually(dead)
    await nc.close()

    for (_, _, expected), reason in zip(cases, _reasons(federation), strict=True):
        assert expected in reason, (expected, reason)
    assert await _indexed_version(federation, record_id) == 2, "nothing hostile was applied"

    later = (
        await node.post(
            "/api/v1/achievements", json=achievement_body(title_en="After the storm"), headers=STAFF
        )
    ).json()

    async def indexed_later() -> bool:
        return await _indexed_version(federation, later["id"]) == 1

    await eventually(indexed_later)
