"""FastAPI dependencies of the node, as `Annotated` aliases so routes stay short.

They are `async def` although most do not await: FastAPI runs a sync dependency in its
thread pool, and a dozen thread hops per request cost more than the request's own work.
Opening a session does no I/O (the connection is taken on first use, in the endpoint).
Tokens from the settings are checked in memory; only a stored token costs a thread hop
for its database lookup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from ctta.node.publisher import Publisher
from ctta.node.settings import NodeSettings
from ctta.node.tokens import service as tokens
from ctta.server.auth import Principal, Role, bearer_value, forbidden, hash_token, unauthorised

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token of this centre. Roles: `reader` (alliance-visible records), "
    "`staff` (writes, private records and private detail), `admin` (tokens, audit log); "
    "each role includes the ones before it.",
)


async def get_session(request: Request) -> AsyncIterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


async def get_settings(request: Request) -> NodeSettings:
    return request.app.state.settings


async def get_publisher(request: Request) -> Publisher:
    return request.app.state.publisher


def _stored_principal(engine: Engine, digest: str) -> Principal | None:
    with Session(engine) as session:
        return tokens.principal_for(session, digest)


async def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal | None:
    """None for an anonymous caller; a token that is sent must be valid, or the answer is 401."""
    token = bearer_value(credentials)
    if token is None:
        return None
    digest = hash_token(token)
    principal = request.app.state.settings_principals.get(digest)
    if principal is None:
        principal = await run_in_threadpool(_stored_principal, request.app.state.engine, digest)
    if principal is None:
        raise unauthorised("the bearer token is unknown or revoked")
    return principal


Caller = Annotated[Principal | None, Depends(get_caller)]


def _require(role: Role) -> Callable[[Principal | None], Awaitable[Principal]]:
    async def require(caller: Caller) -> Principal:
        if caller is None:
            raise unauthorised()
        if not caller.role.includes(role):
            raise forbidden(role)
        return caller

    return require


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[NodeSettings, Depends(get_settings)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
Staff = Annotated[Principal, Depends(_require(Role.STAFF))]
Admin = Annotated[Principal, Depends(_require(Role.ADMIN))]
StaffOnly = Depends(_require(Role.STAFF))
AdminOnly = Depends(_require(Role.ADMIN))
BAD_TOKEN: dict[int | str, dict[str, str]] = {
    401: {"description": "No bearer token where one is needed, or an unknown or revoked one"}
}
AUTH_RESPONSES: dict[int | str, dict[str, str]] = {
    **BAD_TOKEN,
    403: {"description": "The token's role is too low"},
}
