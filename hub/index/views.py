"""`/search`, `/records/{centre}/{kind}/{id}`, `/dead-letters` and `/schemas`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from ctta.hub.deps import Cursor, IsReader, ReaderOnly, SessionDep
from ctta.hub.index import service
from ctta.hub.index.models import SearchPage
from ctta.protocol.records import CentreId, RecordId
from ctta.protocol.schemas import event_schema, schema_names
from ctta.protocol.taxonomy import RecordKind, TechnologyField, Visibility
from ctta.server import deadletters
from ctta.server.db import MAX_OFFSET

router = APIRouter(tags=["index"])


@router.get("/search", response_model=SearchPage, summary="Federated search over every centre")
def search(
    session: SessionDep,
    reader: IsReader,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Chinese and/or English; all terms must match"),
    ] = None,
    kind: Annotated[list[RecordKind], Query()] = [],  # noqa: B006  (FastAPI reads the default)
    centre: Annotated[list[CentreId], Query()] = [],  # noqa: B006
    field: TechnologyField | None = None,
    trl_min: Annotated[int | None, Query(ge=1, le=9)] = None,
    trl_max: Annotated[int | None, Query(ge=1, le=9)] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SearchPage:
    return service.search(
        session,
        q=q,
        kinds=[k.value for k in kind],
        centres=centre,
        field=field.value if field else None,
        trl_min=trl_min,
        trl_max=trl_max,
        include_alliance=reader,
        offset=offset,
        limit=limit,
    )


@router.get("/records/{centre}/{kind}/{record_id}", summary="One record as the hub indexed it")
def get_record(
    centre: CentreId, kind: RecordKind, record_id: RecordId, session: SessionDep, reader: IsReader
) -> dict[str, Any]:
    row = service.find(session, centre, kind.value, record_id)
    hidden = (
        row is None or row.withdrawn or (row.visibility == Visibility.ALLIANCE.value and not reader)
    )
    if hidden:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no {kind.value} {centre}/{record_id} in the index"
        )
    assert row is not None and row.data is not None
    return row.data


@router.get(
    "/dead-letters",
    dependencies=[ReaderOnly],
    response_model=list[deadletters.DeadLetterRead],
    summary="Events the hub refused, newest first",
)
def dead_letters(
    session: SessionDep,
    centre: CentreId | None = None,
    before_id: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[deadletters.DeadLetterRead]:
    return deadletters.latest(session, centre=centre, before_id=before_id, limit=limit)


@router.get(
    "/schemas/{name}.json", summary="JSON Schema of an event payload (the events' dataschema)"
)
def get_schema(name: str) -> dict[str, Any]:
    if name not in schema_names():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no schema {name!r}; try one of {schema_names()}"
        )
    return event_schema(name)
