"""The node's route inbox: a message that always fails is set aside, the rest go on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.msg import Msg
from sqlmodel import Session, select

from ctta.hub.matching.models import Match
from ctta.hub.matching.worker import route_event
from ctta.node import inbox
from ctta.node.app import MIGRATIONS
from ctta.protocol.matches import MatchExplanation, MatchProposal, match_id
from ctta.protocol.records import RecordRef
from ctta.server.db import create_db_engine, migrate
from ctta.server.deadletters import DeadLetter

EXPLANATION = MatchExplanation(
    shared_terms=[], lexical_rank=1, semantic_similarity=0.9, semantic_rank=1, fields_shared=[],
    ipc_shared=[], trl="ok", modes_shared=[], budget="ok", local=False,
)  # fmt: skip


def _route(n: int) -> Msg:
    """A proposal for eastern, as the hub routes it (headers and body)."""
    demand = RecordRef(centre="eastern", id=f"01JA0C2E8R5T7V9X1Z3B5D7F{n:02d}")
    achievement = RecordRef(centre="southern", id=f"01JA0C2E8R5T7V9X1Z3B5D8F{n:02d}")
    row = Match(
        id=match_id(demand, achievement),
        revision=1,
        status="proposed",
        demand_centre="eastern",
        demand_id=demand.id,
        achievement_centre="southern",
        achievement_id=achievement.id,
        score=0.9,
        explanation=EXPLANATION.model_dump(),
        updated_at=datetime.now(UTC),
    )
    proposal = MatchProposal(
        match_id=row.id,
        revision=1,
        status="proposed",
        demand=demand,
        achievement=achievement,
        score=0.9,
        threshold=0.45,
        explanation=EXPLANATION,
        proposed_at=datetime.now(UTC),
    )
    event = route_event("eastern", row, proposal.model_dump_json().encode())
    return Msg(
        None,
        subject=event.subject,
        reply=f"$JS.ACK.CTTA_ROUTES.inbox-eastern.1.{n}.{n}.1764000000000000000.0",
        data=event.body,
        headers=event.headers,
    )  # type: ignore[arg-type]


def test_a_route_that_always_fails_is_dead_lettered_and_the_rest_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'node.db'}")
    migrate(engine, MIGRATIONS)
    poison, good = _route(1), _route(2)
    store = inbox.matches.store

    def store_or_fail(session: Session, proposal: MatchProposal) -> None:
        if proposal.demand.id.endswith("01"):
            raise RuntimeError("cannot store this one")  # stands for any persistent failure
        store(session, proposal)

    monkeypatch.setattr(inbox.matches, "store", store_or_fail)
    with pytest.raises(RuntimeError):
        inbox.apply_batch(engine, "eastern", [poison, good])
    assert inbox.isolate(engine, "eastern", [poison, good], None) == [False, True]
    with Session(engine) as session:
        [letter] = session.exec(select(DeadLetter)).all()
        assert letter.subject == poison.subject and "cannot store this one" in letter.reason
    stored = inbox.apply_batch(engine, "eastern", [good])  # idempotent: stored once
    assert stored == [True]
    engine.dispose()
