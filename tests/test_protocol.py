"""The shared contract: records, subjects, envelope and signatures."""

from __future__ import annotations

import json

import pytest
import rfc8785
from pydantic import ValidationError

from ctta.hub.index.text import query_terms, terms
from ctta.protocol.envelope import EnvelopeError, build_event, check_provenance, parse_event
from ctta.protocol.records import AchievementContent, BilingualTitle, DemandContent
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.schemas import event_schema, schema_names
from ctta.protocol.signing import SigningKey, canonical_bytes
from ctta.protocol.subjects import SubjectError, parse_event_subject, record_subject
from ctta.protocol.taxonomy import RecordKind
from tests.support import achievement_body

RECORD_ID = "01JA0C2E8R5T7V9X1Z3B5D7F9H"


def test_subjects_round_trip() -> None:
    subject = record_subject("eastern", RecordKind.DEMAND, RECORD_ID)
    assert subject == f"ctta.v1.evt.eastern.demand.{RECORD_ID}"
    parsed = parse_event_subject(subject)
    assert (parsed.centre, parsed.record_kind, parsed.id) == (
        "eastern",
        RecordKind.DEMAND,
        RECORD_ID,
    )


@pytest.mark.parametrize(
    "subject",
    [
        "ctta.v1.evt.Eastern.demand.X",
        "ctta.v1.evt.eastern.gadget.X",
        "ctta.v1.evt.eastern.demand",
        "other.v1.evt.a.demand.X",
    ],
)
def test_bad_subjects_are_refused(subject: str) -> None:
    with pytest.raises(SubjectError):
        parse_event_subject(subject)


def test_subject_tokens_cannot_inject_wildcards() -> None:
    with pytest.raises(SubjectError):
        record_subject("eastern", RecordKind.DEMAND, "a.>")


def test_bilingual_text_needs_one_language() -> None:
    with pytest.raises(ValidationError, match="at least one language"):
        BilingualTitle.model_validate({"zh": "", "en": None})


def test_limits_and_unknown_fields_give_clear_errors() -> None:
    body = achievement_body(trl=12, colour="red")
    body.pop("private")
    with pytest.raises(ValidationError) as info:
        AchievementContent.model_validate(body)
    problems = {error["loc"][0]: error["type"] for error in info.value.errors()}
    assert problems == {"trl": "less_than_equal", "colour": "extra_forbidden"}
    with pytest.raises(ValidationError, match="limit is 200"):
        BilingualTitle.model_validate({"zh": "长" * 201})


def test_ipc_codes_are_normalised_and_checked() -> None:
    body = achievement_body(ipc=["h01m 10/54", "H01M"])
    body.pop("private")
    assert AchievementContent.model_validate(body).ipc == ["H01M 10/54", "H01M"]
    with pytest.raises(ValidationError, match="not an IPC code"):
        AchievementContent.model_validate({**body, "ipc": ["battery"]})


def test_money_range_order() -> None:
    with pytest.raises(ValidationError, match="larger than max"):
        DemandContent.model_validate(
            {
                "title": {"en": "x"},
                "summary": {"en": "x"},
                "enterprise": "E",
                "problem_statement": {"en": "p"},
                "budget": {"min": 10, "max": 5},
            }
        )


@pytest.mark.parametrize(
    "document",
    [
        {"b": 1, "a": [True, None, "电池"], "c": {"z": "\u0007\n"}},
        {"x": 1.5e-7, "k": "é"},
        {"😀": 1, "\ue000": 2},
    ],
)
def test_canonical_form_is_rfc8785(document: dict) -> None:
    assert canonical_bytes(document) == rfc8785.dumps(document)


def _registry(key: SigningKey, centre: str = "eastern") -> FederationRegistry:
    registry = FederationRegistry.alliance()
    entry = registry.centre(centre)
    assert entry is not None
    entry.keys[key.key_id] = key.public_key_b64()
    return registry


def _event(key: SigningKey, centre: str = "eastern", data: dict | None = None):
    return build_event(
        nats_subject=record_subject(centre, RecordKind.ACHIEVEMENT, RECORD_ID),
        centre=centre,
        event_type="org.ctta.achievement.upserted.v1",
        ce_subject=f"achievement/{RECORD_ID}",
        version=7,
        data=data or {"title": {"zh": "电池"}},
        dataschema="http://hub/api/v1/schemas/achievement.json",
        signing_key=key,
    )


def test_envelope_round_trip_and_signature() -> None:
    key = SigningKey.generate("eastern#1")
    wire = _event(key)
    assert wire.headers["Nats-Msg-Id"] == wire.headers["ce-id"]
    assert wire.headers["ce-sequence"] == "000000000007"
    received = parse_event(wire.subject, wire.headers, wire.body)
    check_provenance(received, _registry(key))
    assert received.envelope.version == 7
    assert received.data == {"title": {"zh": "电池"}}


def test_tampered_data_fails_verification() -> None:
    key = SigningKey.generate("eastern#1")
    wire = _event(key)
    body = json.dumps({"title": {"zh": "电池!"}}).encode()
    with pytest.raises(EnvelopeError, match="bad signature"):
        check_provenance(parse_event(wire.subject, wire.headers, body), _registry(key))


def test_tampered_header_fails_verification() -> None:
    key = SigningKey.generate("eastern#1")
    wire = _event(key)
    headers = {**wire.headers, "ce-sequence": "000000000009"}
    with pytest.raises(EnvelopeError, match="bad signature"):
        check_provenance(parse_event(wire.subject, headers, wire.body), _registry(key))


def test_centre_cannot_sign_for_another() -> None:
    southern = SigningKey.generate("southern#1")
    registry = _registry(southern, "southern")
    wire = _event(southern, centre="eastern")
    with pytest.raises(EnvelopeError, match="belongs to 'southern'"):
        check_provenance(parse_event(wire.subject, wire.headers, wire.body), registry)


def test_unknown_key_is_refused() -> None:
    wire = _event(SigningKey.generate("eastern#rogue"))
    with pytest.raises(EnvelopeError, match="not in the federation registry"):
        check_provenance(
            parse_event(wire.subject, wire.headers, wire.body), FederationRegistry.alliance()
        )


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_malformed_bodies_are_refused(body: bytes) -> None:
    wire = _event(SigningKey.generate("eastern#1"))
    with pytest.raises(EnvelopeError):
        parse_event(wire.subject, wire.headers, body)


def test_missing_headers_are_refused() -> None:
    with pytest.raises(EnvelopeError, match="no ce-"):
        parse_event(f"ctta.v1.evt.eastern.achievement.{RECORD_ID}", {}, b"{}")


def test_chinese_two_character_words_match_inside_longer_text() -> None:
    assert set(query_terms("电池")) <= set(terms("高能量密度锂电池回收工艺"))
    assert terms("Lithium-ion 电池") == ["lithium", "ion", "电池"]
    assert terms("锂") == ["锂"]


def test_json_schema_for_every_payload() -> None:
    assert set(schema_names()) == {
        "achievement",
        "demand",
        "professional",
        "case",
        "tombstone",
        "response",
        "match",
        "search",
        "search-withdrawn",
        "alert",
    }
    schema = event_schema("achievement")
    assert "trl" in schema["properties"] and "private" not in schema["properties"]


def test_a_lone_surrogate_is_refused_not_crashed_on() -> None:
    key = SigningKey.generate("eastern#1")
    wire = _event(key)
    body = b'{"title": {"zh": "\\ud800"}}'
    with pytest.raises(EnvelopeError, match="cannot be canonicalised"):
        check_provenance(parse_event(wire.subject, wire.headers, body), _registry(key))


@pytest.mark.parametrize("data", [{"price": 1.5}, {"😀": "x"}, {"a": "😀"}])
def test_signatures_hold_for_data_off_the_fast_path(data: dict) -> None:
    key = SigningKey.generate("eastern#1")
    wire = _event(key, data=data)
    received = parse_event(wire.subject, wire.headers, wire.body)
    assert received.plain is False
    check_provenance(received, _registry(key))
