"""The delivery worker: POSTs due deliveries, signed with HMAC-SHA256, and records the outcome.

A receiver verifies `X-CTTA-Signature: sha256=<hex>` over the raw body with its secret, and
uses `X-CTTA-Delivery` to drop the rare repeat (delivery is at least once: a receiver that
processed a request but whose answer was lost gets it again).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass

import httpx
from sqlalchemy import Engine

from ctta.hub.webhooks import service
from ctta.hub.webhooks.models import Delivery, Webhook
from ctta.server.db import session_scope

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-CTTA-Signature"
DELIVERY_HEADER = "X-CTTA-Delivery"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Deliverer:
    engine: Engine
    poll_seconds: float = 0.5
    timeout_seconds: float = 10.0
    batch: int = 20
    max_attempts: int = service.MAX_ATTEMPTS

    async def run(self) -> None:
        async with httpx.AsyncClient(
            timeout=self.timeout_seconds, follow_redirects=False
        ) as client:
            while True:
                due = await asyncio.to_thread(self._due)
                if not due:
                    await asyncio.sleep(self.poll_seconds)
                    continue
                await asyncio.gather(
                    *(self._deliver(client, delivery, hook) for delivery, hook in due)
                )

    def _due(self) -> list[tuple[Delivery, Webhook]]:
        with session_scope(self.engine) as session:
            return service.due(session, self.batch)

    async def _deliver(
        self, client: httpx.AsyncClient, delivery: Delivery, webhook: Webhook
    ) -> None:
        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/cloudevents+json",
            SIGNATURE_HEADER: signature(webhook.secret, body),
            DELIVERY_HEADER: str(delivery.id),
        }
        status_code: int | None = None
        error: str | None = None
        try:
            response = await client.post(webhook.url, content=body, headers=headers)
            status_code = response.status_code
            if not response.is_success:
                error = f"HTTP {status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        row = await asyncio.to_thread(self._record, delivery.id, status_code, error)
        if row.status != "delivered":
            log.warning(
                "webhook %s delivery %s: %s (attempt %d, %s)",
                webhook.id,
                row.id,
                error,
                row.attempts,
                row.status,
            )

    def _record(
        self, delivery_id: int | None, status_code: int | None, error: str | None
    ) -> Delivery:
        assert delivery_id is not None
        with session_scope(self.engine, write=True) as session:
            return service.record_attempt(
                session, delivery_id, status_code, error, self.max_attempts
            )
