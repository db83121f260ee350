"""`/centres`: each centre's id, name, node URL, liveness, counts and lag."""

from __future__ import annotations

from fastapi import APIRouter

from ctta.hub.centres import service
from ctta.hub.centres.models import CentreView
from ctta.hub.deps import AppStateDep, SessionDep

router = APIRouter(prefix="/centres", tags=["centres"])


@router.get("", response_model=list[CentreView], summary="The federation's centres and their state")
def list_centres(session: SessionDep, state: AppStateDep) -> list[CentreView]:
    return service.centre_views(
        session, state.registry, state.ingest, state.settings.heartbeat_timeout_seconds
    )
