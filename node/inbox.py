"""The route inbox: a durable pull consumer of what the hub routes to this centre.

Match proposals (the newest revision wins) and saved-search alerts (kept once) are stored
idempotently, so a replay changes nothing; a resync request re-publishes, through the
outbox, the records where the hub's index differs (a replay only re-sends current state).
What cannot be read is dead-lettered, and the worker keeps going.
"""

from __future__ import annotations

import asyncio
import logging

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session

from ctta.node.federation import flows as federation
from ctta.node.matches import service as matches
from ctta.node.publisher import Publisher
from ctta.node.searches import service as searches
from ctta.protocol import backbone
from ctta.protocol.envelope import HUB_SOURCE, first_error
from ctta.protocol.matches import MatchProposal
from ctta.protocol.resync import ResyncRequest
from ctta.protocol.searches import SearchAlert
from ctta.protocol.subjects import SubjectError, centre_routes, route_kind
from ctta.server import deadletters
from ctta.server.db import session_scope

log = logging.getLogger(__name__)


def inbox_consumer_config(centre: str) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=f"inbox-{centre}",
        description=f"Match routes for {centre}",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=-1,
        filter_subject=centre_routes(centre),
    )


def _reason(msg: Msg) -> str | None:
    """Why a route message is unusable, or None."""
    headers = msg.headers or {}
    if headers.get("ce-source") != HUB_SOURCE:
        return f"source {headers.get('ce-source')!r} is not the hub"
    return None


def _store(session: Session, centre: str, msg: Msg, publisher: Publisher | None) -> str | None:
    """Store (or, for a resync, act on) one route message; returns why it cannot be."""
    reason = _reason(msg)
    if reason is not None:
        return reason
    try:
        kind = route_kind(msg.subject)
    except SubjectError as exc:
        return str(exc)
    try:
        if kind == "match":
            proposal = MatchProposal.model_validate_json(msg.data)
            if centre not in (proposal.demand.centre, proposal.achievement.centre):
                return f"match {proposal.match_id} does not involve {centre}"
            matches.store(session, proposal)
            return None
        if kind == "alert":
            return searches.store_alert(session, SearchAlert.model_validate_json(msg.data))
        if kind == "resync":
            return _resync(session, centre, ResyncRequest.model_validate_json(msg.data), publisher)
    except ValidationError as exc:
        return f"not a {kind} message: {first_error(exc)}"
    return f"unknown route kind {kind!r}"


def _resync(
    session: Session, centre: str, request: ResyncRequest, publisher: Publisher | None
) -> str | None:
    if request.centre != centre:
        return f"resync {request.request_id} is for {request.centre}, not {centre}"
    if publisher is None:
        return "this inbox runs without a publisher and cannot re-publish"
    queued = federation.resync(session, publisher, request)
    log.info("resync %s: re-publishing %d records of %s", request.request_id, queued, centre)
    return None


def apply_batch(
    engine: Engine, centre: str, messages: list[Msg], publisher: Publisher | None = None
) -> list[bool]:
    """Store a batch in one transaction; returns per message whether it was accepted."""
    accepted = []
    with session_scope(engine, write=True) as session:
        for msg in messages:
            reason = _store(session, centre, msg, publisher)
            if reason is not None:
                deadletters.record_message(session, msg, reason)
            accepted.append(reason is None)
    return accepted


def isolate(
    engine: Engine, centre: str, messages: list[Msg], publisher: Publisher | None
) -> list[bool]:
    """After a batch failed: apply each message alone, so one that always fails is
    dead-lettered with its error instead of holding back every route behind it. When the
    dead letter cannot be written either (the database is down), this raises and the
    batch comes back later, whole."""
    accepted = []
    for msg in messages:
        try:
            accepted += apply_batch(engine, centre, [msg], publisher)
        except Exception as exc:
            log.exception("inbox of %s: %s cannot be applied", centre, msg.subject)
            with session_scope(engine, write=True) as session:
                deadletters.record_message(session, msg, f"cannot be applied: {exc!r}"[:500])
            accepted.append(False)
    return accepted


async def run(
    js: JetStreamContext, engine: Engine, centre: str, publisher: Publisher | None = None
) -> None:
    """Consume this centre's routes until cancelled.

    `publisher` signs what a resync request re-publishes and wakes the relay; without it
    resync requests are dead-lettered.
    """
    subscription = await backbone.bind_pull(
        js, backbone.ROUTES_STREAM, inbox_consumer_config(centre)
    )
    batcher = backbone.PullBatcher(subscription, max_batch=64)
    while True:
        try:
            messages = await batcher.next_batch()
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            log.warning("inbox of %s: fetch failed (%r)", centre, exc)
            await asyncio.sleep(0.5)
            continue
        if not messages:
            continue
        try:
            accepted = await asyncio.to_thread(apply_batch, engine, centre, messages, publisher)
        except Exception:
            log.exception("inbox of %s: a batch of %d failed; one at a time", centre, len(messages))
            try:
                accepted = await asyncio.to_thread(isolate, engine, centre, messages, publisher)
            except Exception:
                log.exception("inbox of %s: %d routes will come back", centre, len(messages))
                for msg in messages:
                    await msg.nak(delay=2)
                continue
        if publisher is not None:
            publisher.wake_relay()
        for msg, ok in zip(messages, accepted, strict=True):
            await (msg.ack() if ok else msg.term())
