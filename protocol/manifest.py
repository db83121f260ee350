"""The manifest digest: one function, so a node and the hub can compare what they hold.

A manifest is the set of `(kind, id, version)` a centre publishes (withdrawn and private
records are not in it). Its digest is sha256 over the sorted `kind/id/version` lines. For
a repair the set is split into 256 buckets by the first byte of sha256("kind/id"), so the
hub can say *where* it differs without shipping the whole index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from pydantic import Field

from ctta.protocol.records import StrictModel

Entry = tuple[str, str, int]
DIGEST_PATTERN = r"^[0-9a-f]{64}$"
BUCKET_PATTERN = r"^[0-9a-f]{2}$"


class ManifestSummary(StrictModel):
    """Count and digest of what a centre publishes (or what the hub holds of it)."""

    count: int = Field(ge=0)
    digest: str = Field(pattern=DIGEST_PATTERN, description="sha256 of sorted kind/id/version")


def manifest_digest(entries: Iterable[Entry]) -> str:
    """sha256 over the sorted `kind/id/version` lines, joined by newlines."""
    lines = sorted(f"{kind}/{record_id}/{version}" for kind, record_id, version in entries)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def summary(entries: list[Entry]) -> ManifestSummary:
    return ManifestSummary(count=len(entries), digest=manifest_digest(entries))


def bucket_of(kind: str, record_id: str) -> str:
    """Two hex digits: the bucket a record falls in, whatever its version."""
    return hashlib.sha256(f"{kind}/{record_id}".encode()).hexdigest()[:2]


def buckets(entries: Iterable[Entry]) -> dict[str, ManifestSummary]:
    """Summary per non-empty bucket; an absent bucket is empty."""
    grouped: dict[str, list[Entry]] = {}
    for entry in entries:
        grouped.setdefault(bucket_of(entry[0], entry[1]), []).append(entry)
    return {bucket: summary(grouped[bucket]) for bucket in sorted(grouped)}


def differing_buckets(
    ours: dict[str, ManifestSummary], theirs: dict[str, ManifestSummary]
) -> set[str]:
    """Buckets whose summaries differ, an empty bucket on one side included."""
    every = ours.keys() | theirs.keys()
    return {bucket for bucket in every if ours.get(bucket) != theirs.get(bucket)}
