"""The matcher: keeps the engine in step with the index and routes proposals to centres.

It runs beside the indexer but off its path: the indexer hands over what it applied and
moves on; the matcher embeds, scores and writes proposals in batches. Each proposal and
its route messages (one per centre, `ctta.v1.route.<centre>.match.<id>`) are written in one
transaction to the hub's outbox, which the shared relay publishes; the `Nats-Msg-Id` is
match id, revision and centre, so re-running the same work never routes a thing twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session

from ctta.hub.matching import service
from ctta.hub.matching.engine import Encoder, HybridEngine, MatchDoc, Proposal, RecordKey
from ctta.hub.matching.models import Match
from ctta.protocol.envelope import WireEvent, hub_message
from ctta.protocol.matches import MatchExplanation, MatchProposal
from ctta.protocol.records import RecordRef
from ctta.protocol.subjects import route_subject
from ctta.server.db import session_scope
from ctta.server.outbox import service as outbox

log = logging.getLogger(__name__)

EMBED_BATCH = 64


@dataclass(frozen=True)
class Change:
    """A record the indexer applied: its data, or None when it left the index."""

    key: RecordKey
    version: int
    data: dict[str, Any] | None


@dataclass
class MatcherState:
    routed: int = 0
    retracted: int = 0
    embedded: int = 0
    pending: int = 0
    last_error: str | None = None


@dataclass
class Matcher:
    db: Engine
    encoder: Encoder
    wake_relay: Callable[[], None]
    model_name: str = "use-multilingual-v3"
    threshold: float = 0.45
    per_record: int = 5
    ann_threshold: int = 200_000
    state: MatcherState = field(default_factory=MatcherState)

    def __post_init__(self) -> None:
        self.engine = HybridEngine(self.encoder.dimensions, ann_threshold=self.ann_threshold)
        self._lock = threading.Lock()
        self._queue: asyncio.Queue[Change] = asyncio.Queue()
        self._titles: dict[RecordKey, dict[str, Any]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="matcher")

    def load(self) -> list[Change]:
        """Fill the engine from the index; returns the work a stop left undone.

        The matcher's queue is memory only, but what it lost can be read back: a record's
        vector is stored in the same transaction as its proposals, so a live record
        without a vector of its current version was never matched, and an open proposal
        naming a record that left the index was never retracted.
        """
        with session_scope(self.db) as session:
            records = service.live_records(session)
            stored = service.vectors(session, self.model_name)
            proposed = service.open_record_keys(session)
        missing = []
        with self._lock:
            for data in records:
                doc = service.match_doc(data)
                known = stored.get(str(doc.key))
                fresh = known is not None and known[0] == data["version"]
                self.engine.upsert(doc, known[1] if fresh else None)
                self._titles[doc.key] = data.get("title", {})
                if not fresh:
                    missing.append(Change(doc.key, data["version"], data))
            gone = {key for key in proposed if key not in self.engine}
        return missing + [Change(key, 0, None) for key in sorted(gone, key=str)]

    def notify(self, changes: list[Change]) -> None:
        for change in changes:
            self._queue.put_nowait(change)
        self.state.pending = self._queue.qsize()

    async def run(self, backlog: list[Change]) -> None:
        """Embed what the index holds without a vector, then follow the indexer's changes."""
        if backlog:
            log.info("matcher: %d records left unmatched by the last stop", len(backlog))
            for start in range(0, len(backlog), EMBED_BATCH):
                await self._off_loop(self._handle, backlog[start : start + EMBED_BATCH])
                self.wake_relay()
        while True:
            changes = [await self._queue.get()]
            while not self._queue.empty() and len(changes) < EMBED_BATCH:
                changes.append(self._queue.get_nowait())
            self.state.pending = self._queue.qsize()
            try:
                await self._off_loop(self._handle, changes)
                self.wake_relay()
            except Exception as exc:  # keep matching; these records wait for their next change
                self.state.last_error = repr(exc)
                log.exception("matcher failed on %d changes", len(changes))

    async def _off_loop(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run on the matcher's own thread: embedding must not starve the shared pool
        that the indexer and the relay use for their database work."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        """Drop queued work so a stopping hub does not wait for it."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def preview(self, doc: MatchDoc, limit: int) -> list[Proposal]:
        vector = self.encoder.encode([doc.embed_text])[0]
        with self._lock:
            return self.engine.match(doc, vector, limit)

    def titles(self, key: RecordKey) -> dict[str, Any]:
        return self._titles.get(key, {})

    def _embed(self, upserts: list[Change]) -> list[tuple[MatchDoc, np.ndarray]]:
        docs = [service.match_doc(c.data) for c in upserts if c.data is not None]
        with self._lock:  # keyword side first, so the record is matchable before its vector
            for doc, change in zip(docs, upserts, strict=True):
                self.engine.upsert(doc, None)
                self._titles[doc.key] = (change.data or {}).get("title", {})
        if not docs:
            return []
        vectors = self.encoder.encode([doc.embed_text for doc in docs])
        with self._lock:
            for doc, vector in zip(docs, vectors, strict=True):
                self.engine.set_vector(doc.key, vector)
        self.state.embedded += len(docs)
        return list(zip(docs, vectors, strict=True))

    def _handle(self, changes: list[Change]) -> None:
        """Apply changes to the engine and the match table, queueing routes in one transaction."""
        removed = [c.key for c in changes if c.data is None]
        with self._lock:
            for key in removed:
                self.engine.remove(key)
        upserts = [c for c in changes if c.data is not None]
        scored = self._embed(upserts)
        with self._lock:  # score before taking the write gate: ingest must not wait on it
            ranked = [
                (
                    doc,
                    [
                        p
                        for p in self.engine.match(doc, vector, self.per_record)
                        if p.score >= self.threshold
                    ],
                )
                for doc, vector in scored
            ]
        routes: list[Match] = []
        with session_scope(self.db, write=True) as session:
            # The vector marks the record as matched (see `load`): same transaction.
            for change, (_, vector) in zip(upserts, scored, strict=True):
                service.save_vector(session, change.key, change.version, self.model_name, vector)
            for key in removed:
                routes += [
                    service.retract(session, row) for row in service.open_matches_of(session, key)
                ]
            for doc, proposals in ranked:
                kept = set()
                for proposal in proposals:
                    row = service.upsert_proposal(session, proposal)
                    kept.add((proposal.demand, proposal.achievement))
                    if row is not None:
                        routes.append(row)
                for row in service.open_matches_of(session, doc.key):
                    pair = (
                        RecordKey(row.demand_centre, "demand", row.demand_id),
                        RecordKey(row.achievement_centre, "achievement", row.achievement_id),
                    )
                    if pair not in kept:
                        routes.append(service.retract(session, row))
            for row in routes:
                self._enqueue_routes(session, row)

    def _enqueue_routes(self, session: Session, row: Match) -> None:
        """Queue the proposal (or retraction) for both centres in the caller's transaction."""
        demand = RecordKey(row.demand_centre, "demand", row.demand_id)
        achievement = RecordKey(row.achievement_centre, "achievement", row.achievement_id)
        proposal = MatchProposal(
            match_id=row.id,
            revision=row.revision,
            status=row.status,
            demand=RecordRef(centre=demand.centre, id=demand.id),
            achievement=RecordRef(centre=achievement.centre, id=achievement.id),
            score=row.score,
            threshold=self.threshold,
            explanation=MatchExplanation(**row.explanation),
            demand_title=self.titles(demand),
            achievement_title=self.titles(achievement),
            proposed_at=row.updated_at,
        )
        body = proposal.model_dump_json().encode()
        for centre in dict.fromkeys((demand.centre, achievement.centre)):
            event = route_event(centre, row, body)
            outbox.enqueue(session, event, kind="match", record_id=row.id, version=row.revision)
        if row.status == "retracted":
            self.state.retracted += 1
        else:
            self.state.routed += 1


def route_event(centre: str, row: Match, body: bytes) -> WireEvent:
    """A proposal or retraction for one centre; its Nats-Msg-Id repeats for the same revision."""
    return hub_message(
        nats_subject=route_subject(centre, row.id),
        event_type=f"org.ctta.match.{row.status}.v1",
        ce_subject=f"match/{row.id}",
        sequence=row.revision,
        msg_id=f"{row.id}.{row.revision}.{centre}",
        body=body,
    )
