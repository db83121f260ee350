"""The CloudEvents 1.0 envelope in NATS binary mode, and its Ed25519 signature.

Attributes travel as `ce-*` headers and the body is the plain JSON data, so NATS tooling
can route and inspect events without parsing bodies. The signature covers the canonical
form of every attribute plus the parsed data, which makes it independent of header order
and JSON spacing and lets a consumer prove the event came unchanged from its centre.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ulid import ULID

from ctta.protocol.records import ULID_PATTERN, CentreId
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.signing import NON_BMP, SignatureError, SigningKey, verify
from ctta.protocol.subjects import SubjectError, parse_event_subject
from ctta.protocol.taxonomy import RecordKind

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
SEQUENCE_DIGITS = 12
HEADER_PREFIX = "ce-"
MSG_ID_HEADER = "Nats-Msg-Id"
SIGNATURE_ATTRIBUTE = "signature"
MAX_EVENT_BYTES = 256 * 1024
HUB_SOURCE = "urn:ctta:hub"  # `ce-source` of every route message


class EnvelopeError(ValueError):
    """The event cannot be accepted; the message is the dead-letter reason."""


def source_for(centre: str) -> str:
    return f"urn:ctta:centre:{centre}"


def record_event_type(kind: RecordKind, action: str) -> str:
    """`org.ctta.<kind>.<upserted|withdrawn>.v1`."""
    return f"org.ctta.{kind.value}.{action}.v1"


def format_sequence(version: int) -> str:
    """Zero-padded so the CloudEvents sequence sorts lexicographically."""
    return str(version).zfill(SEQUENCE_DIGITS)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Envelope(BaseModel):
    """The CloudEvents attributes of one backbone event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: str = SPEC_VERSION
    id: str = Field(pattern=ULID_PATTERN)
    source: str
    type: str = Field(pattern=r"^org\.ctta\.[a-z]+\.[a-z]+\.v\d+$")
    subject: str
    time: datetime
    datacontenttype: str = CONTENT_TYPE
    dataschema: str
    centre: CentreId
    sequence: str = Field(pattern=rf"^\d{{{SEQUENCE_DIGITS}}}$")
    sequencetype: str = "Integer"
    keyid: str
    signature: str | None = None

    @field_validator("specversion")
    @classmethod
    def _spec(cls, value: str) -> str:
        if value != SPEC_VERSION:
            raise ValueError(f"specversion {value!r} is not {SPEC_VERSION}")
        return value

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a timezone")
        return value

    @property
    def version(self) -> int:
        return int(self.sequence)

    @property
    def action(self) -> str:
        """`upserted`, `withdrawn`, … : the verb of `type`."""
        return self.type.split(".")[3]

    def attributes(self) -> dict[str, str]:
        """Every attribute as its string form, as carried in headers."""
        values = self.model_dump(exclude_none=True)
        values["time"] = format_time(self.time)
        return {name: str(value) for name, value in values.items()}

    def signed_document(self, data: Any) -> dict[str, Any]:
        """What the signature covers: all attributes but the signature, plus the data."""
        attributes = self.attributes()
        attributes.pop(SIGNATURE_ATTRIBUTE, None)
        return {"attributes": attributes, "data": data}


@dataclass(frozen=True)
class WireEvent:
    """An event as it goes on the wire: NATS subject, headers and body."""

    subject: str
    headers: dict[str, str]
    body: bytes

    @property
    def event_id(self) -> str:
        return self.headers[f"{HEADER_PREFIX}id"]


@dataclass(frozen=True)
class ReceivedEvent:
    """A parsed, not yet verified event."""

    envelope: Envelope
    data: dict[str, Any]
    nats_subject: str
    plain: bool | None = None  # known to need no general JCS (no floats, BMP-only text)


def build_event(
    *,
    nats_subject: str,
    centre: str,
    event_type: str,
    ce_subject: str,
    version: int,
    data: dict[str, Any],
    dataschema: str,
    signing_key: SigningKey,
    event_id: str | None = None,
    time: datetime | None = None,
) -> WireEvent:
    """Serialise and sign one event; the result is stored in the outbox as is."""
    envelope = Envelope(
        id=event_id or str(ULID()),
        source=source_for(centre),
        type=event_type,
        subject=ce_subject,
        time=time or datetime.now(UTC),
        dataschema=dataschema,
        centre=centre,
        sequence=format_sequence(version),
        keyid=signing_key.key_id,
    )
    signature = signing_key.sign(envelope.signed_document(data))
    envelope = envelope.model_copy(update={"signature": signature})
    headers = {
        f"{HEADER_PREFIX}{name}": quote(value, safe=_SAFE)
        for name, value in envelope.attributes().items()
    }
    headers[MSG_ID_HEADER] = envelope.id
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return WireEvent(subject=nats_subject, headers=headers, body=body)


def hub_message(
    *, nats_subject: str, event_type: str, ce_subject: str, sequence: int, msg_id: str, body: bytes
) -> WireEvent:
    """A hub → centre route message (match proposal or search alert).

    Not signed: only the hub's credential may publish on `ctta.v1.route.>` (see
    docs/architecture.md). `msg_id` is deterministic so the stream stores a repeat once.
    """
    headers = {
        f"{HEADER_PREFIX}specversion": SPEC_VERSION,
        f"{HEADER_PREFIX}id": str(ULID()),
        f"{HEADER_PREFIX}source": HUB_SOURCE,
        f"{HEADER_PREFIX}type": event_type,
        f"{HEADER_PREFIX}subject": ce_subject,
        f"{HEADER_PREFIX}time": format_time(datetime.now(UTC)),
        f"{HEADER_PREFIX}datacontenttype": CONTENT_TYPE,
        f"{HEADER_PREFIX}sequence": format_sequence(sequence),
        f"{HEADER_PREFIX}sequencetype": "Integer",
        MSG_ID_HEADER: msg_id,
    }
    return WireEvent(subject=nats_subject, headers=headers, body=body)


# Printable ASCII except '%' stays readable in headers (CloudEvents NATS binding, 1.0.3).
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def parse_event(nats_subject: str, headers: dict[str, str] | None, body: bytes) -> ReceivedEvent:
    """Decode a binary-mode event; raise EnvelopeError with the reason when it is bad."""
    if len(body) > MAX_EVENT_BYTES:
        raise EnvelopeError(f"body is {len(body)} bytes; the limit is {MAX_EVENT_BYTES}")
    attributes = {
        name.removeprefix(HEADER_PREFIX): unquote(value)
        for name, value in (headers or {}).items()
        if name.lower().startswith(HEADER_PREFIX)
    }
    if not attributes:
        raise EnvelopeError("no ce-* headers: not a binary-mode CloudEvent")
    try:
        envelope = Envelope.model_validate(attributes)
    except ValidationError as exc:
        raise EnvelopeError(f"bad envelope: {first_error(exc)}") from None
    floats = False

    def parse_float(text: str) -> float:
        nonlocal floats
        floats = True
        return float(text)

    try:
        text = body.decode("utf-8")
        data = json.loads(text, parse_float=parse_float)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EnvelopeError("body must be a JSON object")
    plain = not floats and not NON_BMP.search(text)
    return ReceivedEvent(envelope=envelope, data=data, nats_subject=nats_subject, plain=plain)


def to_structured(event: ReceivedEvent) -> dict[str, Any]:
    """The CloudEvents JSON (structured mode) form: attributes and `data` in one object."""
    return {**event.envelope.attributes(), "data": event.data}


def from_structured(nats_subject: str, document: dict[str, Any]) -> ReceivedEvent:
    """Read an event in structured JSON form, e.g. from a file written by an integrator."""
    attributes = {k: v for k, v in document.items() if k != "data"}
    headers = {
        f"{HEADER_PREFIX}{name}": quote(str(value), safe=_SAFE)
        for name, value in attributes.items()
    }
    body = json.dumps(document.get("data"), ensure_ascii=False).encode("utf-8")
    return parse_event(nats_subject, headers, body)


def check_provenance(event: ReceivedEvent, registry: FederationRegistry) -> None:
    """Subject centre = `ce-centre` = source = owner of the signing key, and the signature holds."""
    envelope = event.envelope
    try:
        subject = parse_event_subject(event.nats_subject)
    except SubjectError as exc:
        raise EnvelopeError(str(exc)) from None
    if subject.centre != envelope.centre:
        raise EnvelopeError(
            f"subject centre {subject.centre!r} differs from ce-centre {envelope.centre!r}"
        )
    if envelope.source != source_for(envelope.centre):
        raise EnvelopeError(f"source {envelope.source!r} is not {source_for(envelope.centre)!r}")
    if envelope.subject != f"{subject.kind}/{subject.id}":
        raise EnvelopeError(
            f"ce-subject {envelope.subject!r} does not name {subject.kind}/{subject.id}"
        )
    owner = registry.key_owner(envelope.keyid)
    if owner is None:
        raise EnvelopeError(f"signing key {envelope.keyid!r} is not in the federation registry")
    key_centre, public_key = owner
    if key_centre != envelope.centre:
        raise EnvelopeError(
            f"signing key {envelope.keyid!r} belongs to {key_centre!r}, not {envelope.centre!r}"
        )
    if envelope.signature is None:
        raise EnvelopeError("event is not signed")
    try:
        verify(
            public_key, envelope.signed_document(event.data), envelope.signature, plain=event.plain
        )
    except SignatureError as exc:
        raise EnvelopeError(f"bad signature: {exc}") from None


def first_error(exc: ValidationError) -> str:
    """`location: message` of the first validation error, as a dead-letter reason."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"]) or "event"
    return f"{location}: {error['msg']}"
