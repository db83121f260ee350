"""Bearer tokens shared by the node and the hub: roles, hashing, and the checks.

Tokens are only ever kept as their SHA-256: a token is a long random string, so a plain
hash is enough (no salt or slow hash needed) and the hash can be the lookup key, which
makes the lookup constant-time with respect to the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from fastapi import HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials


class Role(StrEnum):
    """What a token may do; each role includes the ones before it."""

    READER = "reader"  # alliance-visible reads
    STAFF = "staff"  # writes, private records and private detail
    ADMIN = "admin"  # token management and the audit log

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def includes(self, other: Role) -> bool:
        return self.rank >= other.rank


@dataclass(frozen=True)
class Principal:
    """Who is calling: a stored token (`token_id`) or one from the settings (`token_id` None)."""

    role: Role
    label: str
    token_id: str | None = None

    @property
    def ref(self) -> str:
        """A short, stable way to name the caller in logs and `created_by` columns."""
        return self.token_id or self.label


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def settings_principals(tokens: Iterable[str], role: Role) -> dict[str, Principal]:
    """Tokens from the environment, keyed by hash; the label names a hash prefix, not the token."""
    return {
        digest: Principal(role=role, label=f"settings token {digest[:8]}")
        for digest in map(hash_token, tokens)
    }


def bearer_value(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        return None
    return credentials.credentials


def unauthorised(detail: str = "a valid bearer token is required") -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def forbidden(needed: Role) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=f"this needs a {needed.value} token")


def token_matches(credentials: HTTPAuthorizationCredentials | None, tokens: Iterable[str]) -> bool:
    """Constant-time comparison against every accepted token."""
    given = bearer_value(credentials)
    if given is None:
        return False
    return any(hmac.compare_digest(given.encode(), token.encode()) for token in tokens)


def require_token(credentials: HTTPAuthorizationCredentials | None, tokens: Iterable[str]) -> None:
    if not token_matches(credentials, tokens):
        raise unauthorised()
