"""FastAPI dependencies of the hub, as `Annotated` aliases.

`async def` although none awaits, to spare a thread hop each (see ctta.node.deps).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from starlette.datastructures import State

from ctta.server.auth import require_token, token_matches
from ctta.server.db import MAX_ROW_ID

bearer = HTTPBearer(auto_error=False, description="Alliance reader token")

Cursor = Annotated[
    int | None, Query(ge=1, le=MAX_ROW_ID, description="Cursor: id of the last row seen")
]


def invalid(field: str, message: str) -> RequestValidationError:
    """A check FastAPI cannot express, refused in the same 422 shape as its own validation
    (the shape the OpenAPI document promises for 422)."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}]
    )


async def get_session(request: Request) -> AsyncIterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


async def get_state(request: Request) -> State:
    return request.app.state


async def is_reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> bool:
    return token_matches(credentials, request.app.state.settings.reader_token_values())


SessionDep = Annotated[Session, Depends(get_session)]
AppStateDep = Annotated[State, Depends(get_state)]
IsReader = Annotated[bool, Depends(is_reader)]


async def require_reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    require_token(credentials, request.app.state.settings.reader_token_values())


ReaderOnly = Depends(require_reader)
