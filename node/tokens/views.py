"""`/admin/tokens`: issue (the token is shown once), list without secrets, revoke."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from ctta.node.deps import AUTH_RESPONSES, Admin, AdminOnly, SessionDep
from ctta.node.tokens import service
from ctta.node.tokens.models import ApiToken, TokenCreate, TokenCreated, TokenPage, TokenRead
from ctta.server.db import write_gate

router = APIRouter(
    prefix="/admin/tokens", tags=["tokens"], dependencies=[AdminOnly], responses=AUTH_RESPONSES
)


def _read(row: ApiToken) -> TokenRead:
    return TokenRead.model_validate(row, from_attributes=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenCreated,
    summary="Issue a token (the response is the only place it is ever shown)",
)
def create(body: TokenCreate, session: SessionDep, admin: Admin) -> TokenCreated:
    with write_gate(session.get_bind()):
        row, token = service.issue_token(session, body.role, body.label, issued_by=admin)
        session.commit()
    return TokenCreated(**_read(row).model_dump(), token=token)


@router.get("", response_model=TokenPage, summary="Tokens of this node, newest first, no secrets")
def list_tokens(
    session: SessionDep,
    include_revoked: bool = False,
    cursor: Annotated[str | None, Query(max_length=26)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TokenPage:
    rows, next_cursor = service.list_page(
        session, include_revoked=include_revoked, cursor=cursor, limit=limit
    )
    return TokenPage(items=[_read(row) for row in rows], next_cursor=next_cursor)


@router.delete(
    "/{token_id}",
    response_model=TokenRead,
    summary="Revoke a token (final; it is refused from the next request on)",
    responses={404: {"description": "No such token"}, 410: {"description": "Already revoked"}},
)
def revoke(token_id: str, session: SessionDep, admin: Admin) -> TokenRead:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no token {token_id}")
    if row.revoked_at is not None:
        raise HTTPException(status.HTTP_410_GONE, f"token {token_id} was already revoked")
    with write_gate(session.get_bind()):
        row = service.revoke(session, row, admin)
        session.commit()
    return _read(row)
