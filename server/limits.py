"""Pure ASGI middleware that protects a service before any route runs.

`BodySizeLimit` refuses request bodies above a size, whether or not the client declared
a `Content-Length` (a chunked body is counted while it streams). `WriteRateLimit` keeps
a token bucket per bearer token (per client address when anonymous) for writes.
Both are plain ASGI, so the node and the hub can stack them on any app; neither keeps
a token in memory, only its hash.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctta.server.auth import hash_token

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def send_json_error(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    """A response shaped like FastAPI's own errors: `{"detail": "..."}`."""
    body = json.dumps({"detail": detail}).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class _BodyTooLarge(Exception):
    """Raised from `receive` to stop the app reading; the middleware answers 413."""


class BodySizeLimit:
    """413 for a request body over `max_bytes` (0 turns the limit off)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        detail = f"the request body is larger than {self.max_bytes} bytes"
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_json_error(send, 413, detail)
            return
        received = 0
        exceeded = started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge(detail)
            return message

        async def guarded_send(message: Message) -> None:
            # Whatever the app answers to a body cut short (FastAPI says 400) is replaced.
            nonlocal started
            if exceeded and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
        if exceeded and not started:
            await send_json_error(send, 413, detail)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class WriteRateLimit:
    """Token bucket per caller for POST/PUT/PATCH/DELETE; 429 with `Retry-After` when empty.

    `rate` tokens per second refill a bucket of `burst`; a rate of 0 turns the limit off.
    The buckets live in this process (one per app instance), which is what a single node
    needs; idle full buckets are dropped so random callers cannot grow the table forever.
    """

    MAX_BUCKETS = 10_000

    def __init__(self, app: ASGIApp, rate: float, burst: int) -> None:
        self.app = app
        self.rate = rate
        self.burst = max(burst, 1)
        self.buckets: dict[str, _Bucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rate <= 0 or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        now = time.monotonic()
        # The address is always charged: tokens are not verified here, so a fresh made-up
        # token per request must not buy a fresh bucket.
        wait = max(self._take(key, now) for key in self._callers(scope))
        if wait > 0:
            await send_json_error(
                send,
                429,
                f"too many writes; at most {self.rate:g} per second after a burst of {self.burst}",
                {"Retry-After": str(math.ceil(wait))},
            )
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _callers(scope: Scope) -> list[str]:
        client = scope.get("client")
        callers = ["address:" + (client[0] if client else "unknown")]
        authorization = _header(scope, b"authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            callers.append("token:" + hash_token(token.strip()))
        return callers

    def _take(self, caller: str, now: float) -> float:
        """Spend one token; return 0, or the seconds until one is available."""
        bucket = self.buckets.get(caller)
        if bucket is None:
            if len(self.buckets) >= self.MAX_BUCKETS:
                self._forget_idle(now)
            while len(self.buckets) >= self.MAX_BUCKETS:  # a hard cap, oldest first
                del self.buckets[next(iter(self.buckets))]
            bucket = self.buckets[caller] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate
        for caller in [c for c, b in self.buckets.items() if now - b.updated >= full_after]:
            del self.buckets[caller]
