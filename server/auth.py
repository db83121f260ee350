"""Bearer-token checks shared by the node and the hub."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from fastapi import HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials


def token_matches(credentials: HTTPAuthorizationCredentials | None, tokens: Iterable[str]) -> bool:
    """Constant-time comparison against every accepted token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        return False
    given = credentials.credentials.encode()
    return any(hmac.compare_digest(given, token.encode()) for token in tokens)


def require_token(credentials: HTTPAuthorizationCredentials | None, tokens: Iterable[str]) -> None:
    if not token_matches(credentials, tokens):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
