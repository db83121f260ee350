"""`/matches` routed to this centre and `/matches/{id}/response`."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from ctta.node.deps import AUTH_RESPONSES, PublisherDep, SessionDep, Staff, StaffOnly
from ctta.node.matches import flows, service
from ctta.node.matches.models import InboxMatch, MatchPage, MatchRead, ResponseRequest
from ctta.protocol.matches import MatchId
from ctta.protocol.records import ULID_PATTERN
from ctta.server.db import MAX_OFFSET, write_gate

router = APIRouter(
    prefix="/matches", tags=["matches"], dependencies=[StaffOnly], responses=AUTH_RESPONSES
)


@router.get("", response_model=MatchPage, summary="Proposals routed to this centre, best first")
def list_matches(
    session: SessionDep,
    status_: Annotated[str | None, Query(alias="status", pattern="^(proposed|retracted)$")] = None,
    record: Annotated[
        str | None, Query(pattern=ULID_PATTERN, description="One of our record ids")
    ] = None,
    min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> MatchPage:
    rows, next_offset = service.page(
        session, status=status_, record_id=record, min_score=min_score, offset=offset, limit=limit
    )
    return MatchPage(items=[service.read(row) for row in rows], next_offset=next_offset)


def _load(session: SessionDep, match_id: MatchId) -> InboxMatch:
    row = session.get(InboxMatch, match_id)
    if row is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no match {match_id} was routed to this centre"
        )
    return row


@router.get("/{match_id}", response_model=MatchRead, summary="One routed proposal")
def get_match(match_id: MatchId, session: SessionDep) -> MatchRead:
    return service.read(_load(session, match_id))


@router.post(
    "/{match_id}/response",
    response_model=MatchRead,
    summary="Accept, decline (with a reason) or move an accepted match along the pipeline",
    responses={409: {"description": "Out of order, or the match was retracted"}},
)
def respond(
    match_id: MatchId,
    body: ResponseRequest,
    session: SessionDep,
    publisher: PublisherDep,
    staff: Staff,
) -> MatchRead:
    row = _load(session, match_id)
    try:
        with write_gate(session.get_bind()):
            row = flows.respond(session, publisher, row, body, staff)
            session.commit()
    except flows.ResponseError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    publisher.wake_relay()
    return service.read(row)
