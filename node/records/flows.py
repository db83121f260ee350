"""Record writes with their side effect: one transaction holds the row and its event.

Validate → {record with version+1; outbox row with the signed event} → commit → wake the
relay. If the process dies after the commit the relay finds the row on restart; if it
dies before, the client got no success. Either way no accepted write is lost.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from sqlmodel import Session
from ulid import ULID

from ctta.node.audit import service as audit
from ctta.node.audit.models import AuditAction
from ctta.node.publisher import Publisher
from ctta.node.records import service
from ctta.node.records.models import Record
from ctta.protocol.envelope import record_event_type
from ctta.protocol.records import (
    CONTENT_MODELS,
    PUBLISHED_MODELS,
    PrivateDetail,
    RecordContent,
    Tombstone,
)
from ctta.protocol.subjects import record_subject
from ctta.protocol.taxonomy import RecordKind, RecordStatus, Visibility
from ctta.server.auth import Principal


class ConflictError(Exception):
    """The write was based on a version that is no longer current."""


class GoneError(Exception):
    """The record was withdrawn; withdrawal is final."""


def split_body(kind: RecordKind, body: BaseModel) -> tuple[RecordContent, PrivateDetail | None]:
    """Separate the publishable content from the private detail of an API body."""
    values = body.model_dump(exclude={"private", "version"})
    content = CONTENT_MODELS[kind].model_validate(values)
    return content, getattr(body, "private", None)


def published_view(record: Record) -> BaseModel:
    """The publishable projection of a stored record."""
    return PUBLISHED_MODELS[RecordKind(record.kind)].model_validate(
        {
            **record.content,
            "id": record.id,
            "centre": record.centre,
            "kind": record.kind,
            "version": record.version,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }
    )


def enqueue_upsert(session: Session, publisher: Publisher, record: Record) -> None:
    kind = RecordKind(record.kind)
    _enqueue(
        session,
        publisher,
        record,
        event_type=record_event_type(kind, "upserted"),
        data=published_view(record).model_dump(mode="json"),
        schema=kind.value,
    )


def enqueue_tombstone(session: Session, publisher: Publisher, record: Record, reason: str) -> None:
    kind = RecordKind(record.kind)
    tombstone = Tombstone(
        id=record.id,
        centre=record.centre,
        kind=kind,
        version=record.version,
        withdrawn_at=record.updated_at,
        reason=reason,
    )
    _enqueue(
        session,
        publisher,
        record,
        event_type=record_event_type(kind, "withdrawn"),
        data=tombstone.model_dump(mode="json"),
        schema="tombstone",
    )


def _enqueue(
    session: Session,
    publisher: Publisher,
    record: Record,
    *,
    event_type: str,
    data: dict,
    schema: str,
) -> None:
    kind = RecordKind(record.kind)
    publisher.enqueue(
        session,
        subject=record_subject(publisher.centre, kind, record.id),
        kind=kind.value,
        entity_id=record.id,
        version=record.version,
        event_type=event_type,
        data=data,
        schema=schema,
        time=record.updated_at,
    )


def create(
    session: Session,
    publisher: Publisher,
    kind: RecordKind,
    content: RecordContent,
    private: PrivateDetail | None,
    actor: Principal,
) -> Record:
    now = datetime.now(UTC)
    record = Record(
        id=str(ULID()),
        kind=kind.value,
        centre=publisher.centre,
        version=1,
        status=content.status.value,
        visibility=content.visibility.value,
        created_at=now,
        updated_at=now,
        content=content.model_dump(mode="json"),
        private=private.model_dump(mode="json") if private else None,
        **service.denormalised_columns(kind, content),
    )
    session.add(record)
    if record.visibility != Visibility.PRIVATE.value:
        enqueue_upsert(session, publisher, record)
    audit.note(session, actor, AuditAction.CREATE, record.kind, record.id, record.version)
    return record


def update(
    session: Session,
    publisher: Publisher,
    record: Record,
    expected_version: int,
    content: RecordContent,
    private: PrivateDetail | None,
    actor: Principal,
) -> Record:
    """Replace a record's content; publish it, or a tombstone if it has just become private."""
    if record.status == RecordStatus.WITHDRAWN.value:
        raise GoneError(f"{record.kind} {record.id} was withdrawn")
    was_published = record.visibility != Visibility.PRIVATE.value
    values = {
        "version": expected_version + 1,
        "status": content.status.value,
        "visibility": content.visibility.value,
        "updated_at": datetime.now(UTC),
        "content": content.model_dump(mode="json"),
        "private": private.model_dump(mode="json") if private else None,
        **service.denormalised_columns(RecordKind(record.kind), content),
    }
    if not service.compare_and_set(session, record.id, expected_version, values):
        raise ConflictError(
            f"{record.kind} {record.id} is at version {record.version}, not {expected_version}"
        )
    session.refresh(record)
    if record.visibility != Visibility.PRIVATE.value:
        enqueue_upsert(session, publisher, record)
    elif was_published:
        enqueue_tombstone(session, publisher, record, reason="private")
    audit.note(session, actor, AuditAction.UPDATE, record.kind, record.id, record.version)
    return record


def withdraw(
    session: Session,
    publisher: Publisher,
    record: Record,
    expected_version: int | None,
    actor: Principal,
) -> Record:
    """Withdraw for good; the federation is told through a tombstone on the record's subject."""
    if record.status == RecordStatus.WITHDRAWN.value:
        raise GoneError(f"{record.kind} {record.id} was already withdrawn")
    current = record.version if expected_version is None else expected_version
    values = {
        "version": current + 1,
        "status": RecordStatus.WITHDRAWN.value,
        "updated_at": datetime.now(UTC),
    }
    if not service.compare_and_set(session, record.id, current, values):
        raise ConflictError(
            f"{record.kind} {record.id} is at version {record.version}, not {current}"
        )
    session.refresh(record)
    if record.visibility != Visibility.PRIVATE.value:
        enqueue_tombstone(session, publisher, record, reason="withdrawn")
    audit.note(session, actor, AuditAction.WITHDRAW, record.kind, record.id, record.version)
    return record
