"""Answering a match: the new stage and its event are written in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import update
from sqlmodel import Session, col

from ctta.node.audit import service as audit
from ctta.node.audit.models import AuditAction
from ctta.node.matches.models import InboxMatch, ResponseRequest
from ctta.node.publisher import Publisher
from ctta.protocol.matches import RESPONSE_TYPE, MatchResponse, can_move
from ctta.protocol.subjects import RESPONSE_KIND, response_subject
from ctta.protocol.taxonomy import MATCH_TRANSITIONS, MatchStage
from ctta.server.auth import Principal


class ResponseError(Exception):
    """The answer does not fit where the match stands; the message says why."""


def respond(
    session: Session,
    publisher: Publisher,
    row: InboxMatch,
    request: ResponseRequest,
    actor: Principal,
) -> InboxMatch:
    if row.status != "proposed":
        raise ResponseError(f"match {row.id} was retracted by the hub")
    current = MatchStage(row.stage)
    if not can_move(current, request.stage):
        allowed = ", ".join(sorted(s.value for s in MATCH_TRANSITIONS[current])) or "none (final)"
        raise ResponseError(f"match {row.id} is {current.value}; next stages: {allowed}")
    now = datetime.now(UTC)
    try:
        response = MatchResponse(
            match_id=row.id,
            centre=publisher.centre,
            sequence=row.sequence + 1,
            stage=request.stage,
            previous_stage=current,
            reason=request.reason,
            reason_text=request.reason_text,
            responded_at=now,
        )
    except ValidationError as exc:
        raise ResponseError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    moved = session.execute(
        update(InboxMatch)
        .where(col(InboxMatch.id) == row.id, col(InboxMatch.sequence) == row.sequence)
        .values(
            stage=request.stage.value,
            sequence=response.sequence,
            reason=request.reason,
            reason_text=request.reason_text,
            updated_at=now,
        )
    )
    if moved.rowcount != 1:
        raise ResponseError(f"match {row.id} changed meanwhile; read it again")
    publisher.enqueue(
        session,
        subject=response_subject(publisher.centre, row.id),
        kind=RESPONSE_KIND,
        entity_id=row.id,
        version=response.sequence,
        event_type=RESPONSE_TYPE,
        data=response.model_dump(mode="json"),
        schema="response",
        time=now,
    )
    audit.note(session, actor, AuditAction.RESPOND, RESPONSE_KIND, row.id, response.sequence)
    session.refresh(row)
    return row
