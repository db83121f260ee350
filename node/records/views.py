"""REST routes for the four record kinds, generated from one template per kind.

No `from __future__ import annotations` here: the body models are local variables that
FastAPI must see as real types, not strings.
"""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, create_model

from ctta.node.deps import IsStaff, PublisherDep, SessionDep, StaffOnly
from ctta.node.records import flows, service
from ctta.node.records.models import API_MODELS, ListFilters, Record
from ctta.protocol.taxonomy import RecordKind, RecordStatus, TechnologyField, Visibility
from ctta.server.db import write_gate

PLURALS = {
    RecordKind.ACHIEVEMENT: "achievements",
    RecordKind.DEMAND: "demands",
    RecordKind.PROFESSIONAL: "professionals",
    RecordKind.CASE: "cases",
}


def _read(kind: RecordKind, record: Record, staff: bool) -> BaseModel:
    read_model = API_MODELS[kind][2]
    view = flows.published_view(record).model_dump()
    # The stored status may be `withdrawn`, which content models do not accept from clients.
    view["status"] = record.status
    return read_model.model_validate({**view, "private": record.private if staff else None})


def records_router(kind: RecordKind) -> APIRouter:
    create_model_, update_model, read_model = API_MODELS[kind]
    page_model = create_model(
        f"{kind.value.capitalize()}Page",
        items=(list[read_model], ...),
        next_cursor=(str | None, None),
    )
    plural = PLURALS[kind]
    router = APIRouter(prefix=f"/{plural}", tags=[plural])

    def _load(session: SessionDep, record_id: str, staff: bool) -> Record:
        record = service.get(session, kind, record_id)
        if record is None or (not staff and record.visibility != Visibility.PUBLIC.value):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {kind.value} {record_id}")
        return record

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        response_model=read_model,
        dependencies=[StaffOnly],
        summary=f"Create a {kind.value}",
    )
    def create(body: create_model_, session: SessionDep, publisher: PublisherDep) -> BaseModel:  # type: ignore[valid-type]
        content, private = flows.split_body(kind, body)
        with write_gate(session.get_bind()):
            record = flows.create(session, publisher, kind, content, private)
            session.commit()
        publisher.wake_relay()
        return _read(kind, record, staff=True)

    @router.get("", response_model=page_model, summary=f"List {plural}")
    def list_records(
        session: SessionDep,
        staff: IsStaff,
        status_: Annotated[RecordStatus | None, Query(alias="status")] = None,
        visibility: Annotated[Visibility | None, Query(description="Staff only")] = None,
        field: TechnologyField | None = None,
        trl_min: Annotated[int | None, Query(ge=1, le=9)] = None,
        trl_max: Annotated[int | None, Query(ge=1, le=9)] = None,
        q: Annotated[
            str | None, Query(max_length=200, description="Words that must all occur")
        ] = None,
        cursor: Annotated[str | None, Query(max_length=26)] = None,
        limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    ) -> BaseModel:
        filters = ListFilters(
            status=status_,
            visibility=visibility,
            field=field,
            trl_min=trl_min,
            trl_max=trl_max,
            q=q,
        )
        rows, next_cursor = service.list_page(
            session, kind, filters, cursor=cursor, limit=limit, public_only=not staff
        )
        return page_model(items=[_read(kind, row, staff) for row in rows], next_cursor=next_cursor)

    @router.get("/{record_id}", response_model=read_model, summary=f"Get a {kind.value}")
    def get(record_id: str, session: SessionDep, staff: IsStaff) -> BaseModel:
        return _read(kind, _load(session, record_id, staff), staff)

    @router.put(
        "/{record_id}",
        response_model=read_model,
        dependencies=[StaffOnly],
        summary=f"Replace a {kind.value} (send the version you read)",
        responses={409: {"description": "Stale version"}, 410: {"description": "Withdrawn"}},
    )
    def update(
        record_id: str,
        body: update_model,
        session: SessionDep,
        publisher: PublisherDep,  # type: ignore[valid-type]
    ) -> BaseModel:
        record = _load(session, record_id, staff=True)
        content, private = flows.split_body(kind, body)
        try:
            with write_gate(session.get_bind()):
                record = flows.update(session, publisher, record, body.version, content, private)
                session.commit()
        except flows.ConflictError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        except flows.GoneError as exc:
            raise HTTPException(status.HTTP_410_GONE, str(exc)) from None
        publisher.wake_relay()
        return _read(kind, record, staff=True)

    @router.delete(
        "/{record_id}",
        response_model=read_model,
        dependencies=[StaffOnly],
        summary=f"Withdraw a {kind.value} (final; publishes a tombstone)",
        responses={
            409: {"description": "Stale version"},
            410: {"description": "Already withdrawn"},
        },
    )
    def withdraw(
        record_id: str,
        session: SessionDep,
        publisher: PublisherDep,
        version: Annotated[
            int | None, Query(ge=1, description="Version you read (recommended)")
        ] = None,
    ) -> BaseModel:
        record = _load(session, record_id, staff=True)
        try:
            with write_gate(session.get_bind()):
                record = flows.withdraw(session, publisher, record, version)
                session.commit()
        except flows.ConflictError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        except flows.GoneError as exc:
            raise HTTPException(status.HTTP_410_GONE, str(exc)) from None
        publisher.wake_relay()
        return _read(kind, record, staff=True)

    return router
