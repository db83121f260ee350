"""Manifest digest and the counts a heartbeat carries."""

from __future__ import annotations

import hashlib

from sqlmodel import Session

from ctta.node.federation.models import Manifest, ManifestEntry
from ctta.node.records import service as records


def manifest_digest(entries: list[tuple[str, str, int]]) -> str:
    """The same digest the hub computes over its index, so the two can be compared."""
    lines = sorted(f"{kind}/{record_id}/{version}" for kind, record_id, version in entries)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def manifest(session: Session, centre: str, *, include_records: bool) -> Manifest:
    rows = records.manifest_rows(session)
    return Manifest(
        centre=centre,
        count=len(rows),
        digest=manifest_digest(rows),
        records=[ManifestEntry(kind=k, id=i, version=v) for k, i, v in rows]
        if include_records
        else None,
    )


def published_counts(session: Session) -> dict[str, int]:
    """Counted in SQL: heartbeats run every few seconds, manifests rarely."""
    return records.published_counts(session)
