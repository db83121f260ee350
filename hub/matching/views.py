"""`/matches` (what the hub proposed and where each side stands) and `/matches/preview`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from ctta.hub.deps import AppStateDep, ReaderOnly, SessionDep, invalid
from ctta.hub.matching import service
from ctta.hub.matching.models import MatchView, PreviewRequest, ProposalView
from ctta.protocol.taxonomy import CENTRE_ID_PATTERN
from ctta.server.db import MAX_OFFSET

# Matches show negotiation stages and alliance-only titles: alliance members only.
router = APIRouter(prefix="/matches", tags=["matches"], dependencies=[ReaderOnly])

PREVIEW_ID = "0" * 26


@router.get(
    "", response_model=list[MatchView], summary="Proposals, best first; filter by centre and status"
)
def list_matches(
    session: SessionDep,
    centre: Annotated[str | None, Query(pattern=CENTRE_ID_PATTERN)] = None,
    status_: Annotated[str | None, Query(alias="status", pattern="^(proposed|retracted)$")] = None,
    min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[MatchView]:
    return service.list_matches(
        session, centre=centre, status=status_, min_score=min_score, limit=limit, offset=offset
    )


@router.post(
    "/preview",
    response_model=list[ProposalView],
    summary="What a record would match (publishes nothing)",
)
def preview(body: PreviewRequest, state: AppStateDep) -> list[ProposalView]:
    matcher = getattr(state, "matcher", None)
    if matcher is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "matching is switched off on this hub"
        )
    content = body.demand if body.kind == "demand" else body.achievement
    if content is None:
        raise invalid(body.kind, f"give the record as '{body.kind}'")
    data = {
        **content.model_dump(mode="json"),
        "kind": body.kind,
        "centre": body.centre or "preview",
        "id": PREVIEW_ID,
    }
    proposals = matcher.preview(service.match_doc(data), body.limit)
    return [
        ProposalView(
            demand={"centre": p.demand.centre, "id": p.demand.id},
            achievement={"centre": p.achievement.centre, "id": p.achievement.id},
            score=p.score,
            above_threshold=p.score >= matcher.threshold,
            explanation=p.explanation,
            title=matcher.titles(p.achievement if body.kind == "demand" else p.demand),
        )
        for p in proposals
    ]
