"""REST routes for the four record kinds, generated from one template per kind.

No `from __future__ import annotations` here: the body models are local variables that
FastAPI must see as real types, not strings.
"""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, create_model

from ctta.node.deps import AUTH_RESPONSES, BAD_TOKEN, Caller, PublisherDep, SessionDep, Staff
from ctta.node.records import flows, service
from ctta.node.records.models import API_MODELS, ListFilters, Record
from ctta.protocol.records import MAX_VERSION, ULID_PATTERN, RecordId
from ctta.protocol.taxonomy import RecordKind, RecordStatus, TechnologyField, Visibility
from ctta.server.auth import Principal, Role
from ctta.server.db import NO_NUL, write_gate

WRITE_RESPONSES: dict[int | str, dict[str, str]] = {
    **AUTH_RESPONSES,
    413: {"description": "The published event would exceed the federation's size limit"},
}
PLURALS = {
    RecordKind.ACHIEVEMENT: "achievements",
    RecordKind.DEMAND: "demands",
    RecordKind.PROFESSIONAL: "professionals",
    RecordKind.CASE: "cases",
}


def _is_staff(caller: Principal | None) -> bool:
    return caller is not None and caller.role.includes(Role.STAFF)


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

    def _load(session: SessionDep, record_id: RecordId, caller: Principal | None) -> Record:
        record = service.get(session, kind, record_id)
        if record is None or record.visibility not in service.visible_to(caller):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {kind.value} {record_id}")
        return record

    @router.post(
        "",
        status_code=status.HTTP_201_CREATED,
        response_model=read_model,
        summary=f"Create a {kind.value} (staff)",
        responses=WRITE_RESPONSES,
    )
    def create(
        body: create_model_,  # type: ignore[valid-type]
        session: SessionDep,
        publisher: PublisherDep,
        staff: Staff,
    ) -> BaseModel:
        content, private = flows.split_body(kind, body)
        with write_gate(session.get_bind()):
            record = flows.create(session, publisher, kind, content, private, staff)
            session.commit()
        publisher.wake_relay()
        return _read(kind, record, staff=True)

    @router.get(
        "",
        response_model=page_model,
        summary=f"List {plural} (alliance ones with a token, private ones for staff)",
        responses=BAD_TOKEN,
    )
    def list_records(
        session: SessionDep,
        caller: Caller,
        status_: Annotated[RecordStatus | None, Query(alias="status")] = None,
        visibility: Annotated[
            Visibility | None, Query(description="Among those the token may see")
        ] = None,
        field: TechnologyField | None = None,
        trl_min: Annotated[int | None, Query(ge=1, le=9)] = None,
        trl_max: Annotated[int | None, Query(ge=1, le=9)] = None,
        q: Annotated[
            str | None,
            Query(max_length=200, pattern=NO_NUL, description="Words that must all occur"),
        ] = None,
        cursor: Annotated[str | None, Query(pattern=ULID_PATTERN)] = None,
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
            session, kind, filters, cursor=cursor, limit=limit, visible=service.visible_to(caller)
        )
        staff = _is_staff(caller)
        return page_model(items=[_read(kind, row, staff) for row in rows], next_cursor=next_cursor)

    @router.get(
        "/{record_id}",
        response_model=read_model,
        summary=f"Get a {kind.value} (private detail for staff)",
        responses={
            **BAD_TOKEN,
            404: {"description": "No such record, or not visible to this caller"},
        },
    )
    def get(record_id: RecordId, session: SessionDep, caller: Caller) -> BaseModel:
        return _read(kind, _load(session, record_id, caller), _is_staff(caller))

    @router.put(
        "/{record_id}",
        response_model=read_model,
        summary=f"Replace a {kind.value} (staff; send the version you read)",
        responses={
            409: {"description": "Stale version"},
            410: {"description": "Withdrawn"},
            **WRITE_RESPONSES,
        },
    )
    def update(
        record_id: RecordId,
        body: update_model,  # type: ignore[valid-type]
        session: SessionDep,
        publisher: PublisherDep,
        staff: Staff,
    ) -> BaseModel:
        record = _load(session, record_id, staff)
        content, private = flows.split_body(kind, body)
        try:
            with write_gate(session.get_bind()):
                record = flows.update(
                    session, publisher, record, body.version, content, private, staff
                )
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
        summary=f"Withdraw a {kind.value} (staff; final; publishes a tombstone)",
        responses={
            **AUTH_RESPONSES,
            409: {"description": "Stale version"},
            410: {"description": "Already withdrawn"},
        },
    )
    def withdraw(
        record_id: RecordId,
        session: SessionDep,
        publisher: PublisherDep,
        staff: Staff,
        version: Annotated[
            int | None, Query(ge=1, le=MAX_VERSION, description="Version you read (recommended)")
        ] = None,
    ) -> BaseModel:
        record = _load(session, record_id, staff)
        try:
            with write_gate(session.get_bind()):
                record = flows.withdraw(session, publisher, record, version, staff)
                session.commit()
        except flows.ConflictError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        except flows.GoneError as exc:
            raise HTTPException(status.HTTP_410_GONE, str(exc)) from None
        publisher.wake_relay()
        return _read(kind, record, staff=True)

    return router
