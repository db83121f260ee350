"""FastAPI dependencies of the node, as `Annotated` aliases so routes stay short.

They are `async def` although none of them awaits: FastAPI runs a sync dependency in its
thread pool, and a dozen thread hops per request cost more than the request's own work.
Opening a session does no I/O (the connection is taken on first use, in the endpoint).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from ctta.node.publisher import Publisher
from ctta.node.settings import NodeSettings
from ctta.server.auth import require_token, token_matches

bearer = HTTPBearer(auto_error=False, description="Staff token of this centre")


async def get_session(request: Request) -> AsyncIterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


async def get_settings(request: Request) -> NodeSettings:
    return request.app.state.settings


async def get_publisher(request: Request) -> Publisher:
    return request.app.state.publisher


async def is_staff(
    settings: Annotated[NodeSettings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> bool:
    return token_matches(credentials, settings.staff_token_values())


async def require_staff(
    settings: Annotated[NodeSettings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    require_token(credentials, settings.staff_token_values())


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[NodeSettings, Depends(get_settings)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
IsStaff = Annotated[bool, Depends(is_staff)]
StaffOnly = Depends(require_staff)
