"""Error responses both apps share."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError


async def validation_error(_request: Request, exc: Exception) -> Response:
    """FastAPI's 422, ASCII-escaped: its own handler echoes the input, and an echoed lone
    surrogate cannot be encoded as UTF-8, which turned a refusal into a 500."""
    assert isinstance(exc, RequestValidationError)
    body = json.dumps({"detail": jsonable_encoder(exc.errors())})
    return Response(body, status_code=422, media_type="application/json")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
