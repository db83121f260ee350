"""Listener for node heartbeats on `ctta.v1.hb.*` (core NATS: liveness is not history)."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from pydantic import ValidationError
from sqlalchemy import Engine

from ctta.hub.centres import service
from ctta.protocol.heartbeat import Heartbeat
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.subjects import ALL_HEARTBEATS, SubjectError, parse_heartbeat_subject
from ctta.server.db import session_scope

log = logging.getLogger(__name__)


async def listen(nc: NatsClient, engine: Engine, registry: FederationRegistry) -> None:
    """Subscribe and keep the latest heartbeat of every registered centre until cancelled."""

    def store(beat: Heartbeat) -> None:
        with session_scope(engine, write=True) as session:
            service.record_heartbeat(session, beat)

    async def on_message(msg: Msg) -> None:
        try:
            centre = parse_heartbeat_subject(msg.subject)
            beat = Heartbeat.model_validate_json(msg.data)
        except (SubjectError, ValidationError) as exc:
            log.warning("ignored heartbeat on %s: %s", msg.subject, exc)
            return
        if beat.centre != centre or registry.centre(centre) is None:
            log.warning("ignored heartbeat on %s claiming centre %r", msg.subject, beat.centre)
            return
        await asyncio.to_thread(store, beat)

    subscription = await nc.subscribe(ALL_HEARTBEATS, cb=on_message)
    try:
        await asyncio.Event().wait()
    finally:
        await subscription.unsubscribe()
