"""`/federation/manifest` and `/federation/status`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from ctta.node.deps import AUTH_RESPONSES, SessionDep, SettingsDep, StaffOnly
from ctta.node.federation import service
from ctta.node.federation.models import FederationStatus, Manifest
from ctta.server import deadletters
from ctta.server.db import MAX_ROW_ID
from ctta.server.outbox import service as outbox

router = APIRouter(prefix="/federation", tags=["federation"])


@router.get(
    "/manifest", response_model=Manifest, summary="Count and digest of what this node publishes"
)
def get_manifest(
    session: SessionDep,
    settings: SettingsDep,
    include: Annotated[Literal["records"] | None, Query()] = None,
) -> Manifest:
    return service.manifest(session, settings.centre, include_records=include == "records")


@router.get(
    "/status", response_model=FederationStatus, summary="Outbox backlog, last publish, NATS state"
)
def get_status(request: Request, session: SessionDep, settings: SettingsDep) -> FederationStatus:
    relay_state = request.app.state.relay_state
    return FederationStatus(
        centre=settings.centre,
        nats=request.app.state.nats_state,
        outbox_backlog=outbox.backlog(session),
        published_since_start=relay_state.published,
        last_published_at=relay_state.last_published_at,
        last_publish_error=relay_state.last_error,
        task_restarts=request.app.state.task_failures,
    )


@router.get(
    "/dead-letters",
    response_model=list[deadletters.DeadLetterRead],
    dependencies=[StaffOnly],
    responses=AUTH_RESPONSES,
    summary="Route messages this node refused, newest first (staff)",
)
def dead_letters(
    session: SessionDep,
    before_id: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="Cursor: id of the last row seen")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[deadletters.DeadLetterRead]:
    return deadletters.latest(session, centre=None, before_id=before_id, limit=limit)
