"""`/saved-searches`: standing queries of this centre and the alerts they produced."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from sqlmodel import col, select

from ctta.node.deps import AUTH_RESPONSES, PublisherDep, SessionDep, Staff, StaffOnly
from ctta.node.searches import flows
from ctta.node.searches.models import AlertRead, AlertRow, SavedSearchRead, SavedSearchRow
from ctta.protocol.records import RecordId
from ctta.protocol.searches import SearchQuery
from ctta.server.db import MAX_OFFSET, write_gate

router = APIRouter(
    prefix="/saved-searches",
    tags=["saved-searches"],
    dependencies=[StaffOnly],
    responses=AUTH_RESPONSES,
)


def _read(row: SavedSearchRow) -> SavedSearchRead:
    return SavedSearchRead(
        **row.query, id=row.id, version=row.version, status=row.status, updated_at=row.updated_at
    )


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=SavedSearchRead, summary="Save a search"
)
def save(
    body: SearchQuery, session: SessionDep, publisher: PublisherDep, staff: Staff
) -> SavedSearchRead:
    if not (body.q.strip() or body.kinds or body.fields):
        # Shaped like every other 422, so clients and the OpenAPI schema see one error format.
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body",), "msg": "give words (q), kinds or fields"}]
        )
    with write_gate(session.get_bind()):
        row = flows.save(session, publisher, body, staff)
        session.commit()
    publisher.wake_relay()
    return _read(row)


@router.get("", response_model=list[SavedSearchRead], summary="This centre's saved searches")
def list_searches(session: SessionDep) -> list[SavedSearchRead]:
    rows = session.exec(
        select(SavedSearchRow)
        .where(SavedSearchRow.status == "active")
        .order_by(col(SavedSearchRow.id))
    )
    return [_read(row) for row in rows]


def _load(session: SessionDep, search_id: RecordId) -> SavedSearchRow:
    row = session.get(SavedSearchRow, search_id)
    if row is None or row.status != "active":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no saved search {search_id}")
    return row


@router.delete("/{search_id}", response_model=SavedSearchRead, summary="Stop a saved search")
def withdraw(
    search_id: RecordId, session: SessionDep, publisher: PublisherDep, staff: Staff
) -> SavedSearchRead:
    row = _load(session, search_id)
    with write_gate(session.get_bind()):
        row = flows.withdraw(session, publisher, row, staff)
        session.commit()
    publisher.wake_relay()
    return _read(row)


@router.get(
    "/{search_id}/alerts",
    response_model=list[AlertRead],
    summary="New records that fit, newest first",
)
def alerts(
    search_id: RecordId,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[AlertRead]:
    _load(session, search_id)
    statement = (
        select(AlertRow)
        .where(AlertRow.search_id == search_id)
        .order_by(col(AlertRow.received_at).desc())
        .offset(offset)
        .limit(limit)
    )
    return [
        AlertRead(
            id=row.id,
            search_id=row.search_id,
            record={"centre": row.record_centre, "id": row.record_id},
            kind=row.kind,
            version=row.version,
            title=row.title,
            received_at=row.received_at,
        )
        for row in session.exec(statement)
    ]
