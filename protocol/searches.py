"""Saved searches: a centre's standing query, and the alerts the hub routes for it."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ctta.protocol.records import CentreId, RecordId, RecordRef, StrictModel, Version
from ctta.protocol.taxonomy import TRL_MAX, TRL_MIN, RecordKind, TechnologyField

SEARCH_UPSERTED = "org.ctta.search.upserted.v1"
SEARCH_WITHDRAWN = "org.ctta.search.withdrawn.v1"
ALERT_TYPE = "org.ctta.search.alert.v1"


class SearchQuery(StrictModel):
    """What a saved search looks for; a new record must satisfy every part that is given."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = Field(
        default="", description="Chinese and/or English words; all must occur"
    )
    kinds: list[
        Literal[RecordKind.ACHIEVEMENT, RecordKind.DEMAND, RecordKind.PROFESSIONAL, RecordKind.CASE]
    ] = Field(default_factory=list, max_length=4)
    fields: list[TechnologyField] = Field(default_factory=list, max_length=16)
    trl_min: int | None = Field(default=None, ge=TRL_MIN, le=TRL_MAX)


class SavedSearch(SearchQuery):
    """Data of `org.ctta.search.upserted.v1` on `ctta.v1.evt.<centre>.search.<id>`."""

    id: RecordId
    centre: CentreId
    version: Version
    updated_at: datetime


class SearchWithdrawn(StrictModel):
    id: RecordId
    centre: CentreId
    version: Version


class SearchAlert(StrictModel):
    """Data of `org.ctta.search.alert.v1` on `ctta.v1.route.<centre>.alert.<id>`."""

    alert_id: str
    search_id: RecordId
    record: RecordRef
    kind: RecordKind
    version: int
    title: dict[str, str | None]
    published_at: datetime


def alert_id(search_id: str, record: RecordRef, version: int) -> str:
    """Deterministic, so a replayed event never alerts twice."""
    key = f"{search_id}|{record.centre}/{record.id}@{version}"
    return "a" + hashlib.sha256(key.encode()).hexdigest()[:24]
