"""The one place that builds and parses NATS subjects.

Subjects put the owning centre early (`ctta.v1.evt.<centre>.…`) so one permission prefix
covers everything a centre owns, and one subject per record lets the event stream keep
just the newest message per record: the stream itself is the federation catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctta.protocol.taxonomy import CENTRE_ID_RE, RecordKind

ROOT = "ctta.v1"
EVENTS_ROOT = f"{ROOT}.evt"
ROUTES_ROOT = f"{ROOT}.route"
HEARTBEAT_ROOT = f"{ROOT}.hb"

ALL_EVENTS = f"{EVENTS_ROOT}.>"
ALL_ROUTES = f"{ROUTES_ROOT}.>"
ALL_HEARTBEATS = f"{HEARTBEAT_ROOT}.*"
RESPONSE_KIND = "response"
SEARCH_KIND = "search"  # a centre's saved search: owned, published and withdrawn like a record
EVENT_KINDS_BEYOND_RECORDS = (RESPONSE_KIND, SEARCH_KIND)


class SubjectError(ValueError):
    """A subject that does not follow the contract."""


def _check_centre(centre: str) -> str:
    if not CENTRE_ID_RE.match(centre):
        raise SubjectError(f"centre id {centre!r} is not a lowercase slug [a-z][a-z0-9-]*")
    return centre


def _check_token(token: str, what: str) -> str:
    if not token or any(c in token for c in ".*> \t\r\n"):
        raise SubjectError(f"{what} {token!r} cannot be a subject token")
    return token


def record_subject(centre: str, kind: RecordKind, record_id: str) -> str:
    """Subject of every state change of one record owned by `centre`."""
    return f"{EVENTS_ROOT}.{_check_centre(centre)}.{kind.value}.{_check_token(record_id, 'id')}"


def event_filter(centre: str | None = None, kind: str | None = None) -> str:
    """Filter over record events, optionally of one centre and/or one kind (`None` = any)."""
    known = (*RecordKind.__members__.values(), *EVENT_KINDS_BEYOND_RECORDS)
    if kind is not None and kind not in known:
        raise SubjectError(f"unknown kind {kind!r}")
    centre_token = _check_centre(centre) if centre is not None else "*"
    return f"{EVENTS_ROOT}.{centre_token}.{kind or '*'}.*"


def response_subject(centre: str, match_id: str) -> str:
    """A centre's answer to a match proposal."""
    match_id = _check_token(match_id, "match id")
    return f"{EVENTS_ROOT}.{_check_centre(centre)}.{RESPONSE_KIND}.{match_id}"


def search_subject(centre: str, search_id: str) -> str:
    """A centre's saved search (state and withdrawal share the subject, like records)."""
    search_id = _check_token(search_id, "search id")
    return f"{EVENTS_ROOT}.{_check_centre(centre)}.{SEARCH_KIND}.{search_id}"


def route_subject(centre: str, match_id: str) -> str:
    """Hub → centre match proposals and updates."""
    return f"{ROUTES_ROOT}.{_check_centre(centre)}.match.{_check_token(match_id, 'match id')}"


def alert_subject(centre: str, alert_id: str) -> str:
    """Hub → centre: a newly published record fits one of the centre's saved searches."""
    return f"{ROUTES_ROOT}.{_check_centre(centre)}.alert.{_check_token(alert_id, 'alert id')}"


def resync_subject(centre: str, request_id: str) -> str:
    """Hub → centre: re-publish the records of the buckets where the hub's index differs."""
    return f"{ROUTES_ROOT}.{_check_centre(centre)}.resync.{_check_token(request_id, 'request id')}"


def route_kind(subject: str) -> str:
    """`match`, `alert` or `resync`: what a route message carries."""
    parts = subject.split(".")
    if len(parts) != 6 or ".".join(parts[:3]) != ROUTES_ROOT:
        raise SubjectError(f"{subject!r} is not ctta.v1.route.<centre>.<kind>.<id>")
    return parts[4]


def centre_routes(centre: str) -> str:
    return f"{ROUTES_ROOT}.{_check_centre(centre)}.>"


def heartbeat_subject(centre: str) -> str:
    return f"{HEARTBEAT_ROOT}.{_check_centre(centre)}"


@dataclass(frozen=True)
class EventSubject:
    """A parsed `ctta.v1.evt.<centre>.<kind>.<id>` subject."""

    centre: str
    kind: str
    id: str

    @property
    def record_kind(self) -> RecordKind | None:
        """The record kind, or None for non-record events such as match responses."""
        try:
            return RecordKind(self.kind)
        except ValueError:
            return None


def parse_event_subject(subject: str) -> EventSubject:
    """Split an event subject; raise SubjectError when it is not one."""
    parts = subject.split(".")
    if len(parts) != 6 or ".".join(parts[:3]) != EVENTS_ROOT:
        raise SubjectError(f"{subject!r} is not ctta.v1.evt.<centre>.<kind>.<id>")
    centre, kind, entity_id = parts[3:]
    _check_centre(centre)
    if kind not in EVENT_KINDS_BEYOND_RECORDS and kind not in RecordKind.__members__.values():
        raise SubjectError(f"{subject!r} names an unknown kind {kind!r}")
    return EventSubject(centre=centre, kind=kind, id=entity_id)


def parse_heartbeat_subject(subject: str) -> str:
    """The centre id of a heartbeat subject."""
    prefix = f"{HEARTBEAT_ROOT}."
    if not subject.startswith(prefix):
        raise SubjectError(f"{subject!r} is not a heartbeat subject")
    return _check_centre(subject.removeprefix(prefix))


# --- leaf topology plumbing: where cross-domain stream sourcing delivers ----------------


def centre_events(centre: str) -> str:
    """Everything a centre owns: the one prefix its leaf credential may publish on."""
    return f"{EVENTS_ROOT}.{_check_centre(centre)}.>"


def source_delivery(centre: str) -> str:
    """Delivery prefix of the hub's source consumer in the centre's domain (leaf → hub)."""
    return f"ctta.deliver.{_check_centre(centre)}"


def route_delivery(centre: str) -> str:
    """Delivery prefix of the centre inbox's source consumer on the hub's routes (hub → leaf)."""
    return f"ctta.route.{_check_centre(centre)}"
