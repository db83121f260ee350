"""`/audit`: who changed what on this node, for admins."""

from typing import Annotated

from fastapi import APIRouter, Query

from ctta.node.audit import service
from ctta.node.audit.models import AuditAction, AuditPage, AuditRead
from ctta.node.deps import AUTH_RESPONSES, AdminOnly, SessionDep

router = APIRouter(
    prefix="/audit", tags=["audit"], dependencies=[AdminOnly], responses=AUTH_RESPONSES
)


@router.get("", response_model=AuditPage, summary="Changes made through this node, newest first")
def list_entries(
    session: SessionDep,
    action: AuditAction | None = None,
    kind: Annotated[str | None, Query(max_length=16)] = None,
    entity_id: Annotated[
        str | None, Query(max_length=32, description="Record, match, search or token id")
    ] = None,
    actor_token_id: Annotated[str | None, Query(max_length=26)] = None,
    cursor: Annotated[str | None, Query(max_length=26)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AuditPage:
    rows, next_cursor = service.list_page(
        session,
        action=action,
        kind=kind,
        entity_id=entity_id,
        actor_token_id=actor_token_id,
        cursor=cursor,
        limit=limit,
    )
    return AuditPage(
        items=[AuditRead.model_validate(row, from_attributes=True) for row in rows],
        next_cursor=next_cursor,
    )
