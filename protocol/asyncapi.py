"""The AsyncAPI 3.0 description of the backbone, generated from the protocol models.

Integrators generate clients and documentation from it, so it must say exactly what the
code sends: headers come from the `Envelope` model, payloads from the same JSON Schemas
the hub serves at the `dataschema` URLs. `docs/asyncapi.json` is this output, committed;
a test regenerates it and fails on any drift.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from ctta.protocol.envelope import HEADER_PREFIX, MSG_ID_HEADER, Envelope, record_event_type
from ctta.protocol.heartbeat import Heartbeat
from ctta.protocol.matches import RESPONSE_TYPE, MatchProposal, MatchResponse
from ctta.protocol.resync import RESYNC_TYPE, ResyncRequest
from ctta.protocol.schemas import TOMBSTONE, event_schema
from ctta.protocol.subjects import EVENTS_ROOT, HEARTBEAT_ROOT, RESPONSE_KIND, ROUTES_ROOT
from ctta.protocol.taxonomy import CENTRES, RecordKind

ASYNCAPI_VERSION = "3.0.0"
API_VERSION = "1.0.0"
COMPONENT_REF = "#/components/schemas/"
RECORD_HEADERS = "CloudEventHeaders"
ROUTE_HEADERS = "RouteHeaders"
# The hub holds no centre key, so its routes carry only these attributes, unsigned.
ROUTE_ATTRIBUTES = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "sequence",
    "sequencetype",
)
HEADER_NOTES = {
    "id": f"ULID of the event; also sent as `{MSG_ID_HEADER}` for JetStream de-duplication",
    "source": "`urn:ctta:centre:<centre>`",
    "type": "`org.ctta.<kind>.<upserted|withdrawn>.v1`, `org.ctta.match.<verb>.v1`",
    "subject": "`<kind>/<id>`",
    "time": "RFC 3339, UTC",
    "dataschema": "URL of the payload's JSON Schema, served by the hub",
    "centre": "Owning centre; equals the subject's centre and the source",
    "sequence": "Record version, zero-padded to 12 digits",
    "keyid": "`<centre>#<label>`: the signing key, listed in the federation registry",
    "signature": "base64url Ed25519 over the RFC 8785 form of the attributes and data",
}


def _hoist(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """Move pydantic's `$defs` into components, so models share one definition each."""
    definitions = schema.pop("$defs", {})
    schema.pop("$schema", None)
    for name, definition in definitions.items():
        definition = _rewrite_refs(definition)
        if into.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas are both named {name!r}")
    return _rewrite_refs(schema)


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: value.replace("#/$defs/", COMPONENT_REF) if key == "$ref" else _rewrite_refs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(mode="serialization")


def _headers_schema(
    attributes: list[str], title: str, description: str, msg_id: str
) -> dict[str, Any]:
    """`ce-*` headers: the Envelope's fields as the strings NATS carries."""
    fields = _model_schema(Envelope)["properties"]
    properties: dict[str, Any] = {}
    for name in attributes:
        field = {key: value for key, value in fields[name].items() if key in ("pattern", "format")}
        field["type"] = "string"
        if "default" in fields[name] and fields[name]["default"] is not None:
            field["const"] = fields[name]["default"]
        if name in HEADER_NOTES:
            field["description"] = HEADER_NOTES[name]
        properties[f"{HEADER_PREFIX}{name}"] = field
    properties[MSG_ID_HEADER] = {"type": "string", "description": msg_id}
    return {
        "title": title,
        "description": description,
        "type": "object",
        "properties": properties,
        "required": list(properties),
    }


def _message(
    name: str, event_type: str, payload: str, headers: str, summary: str
) -> dict[str, Any]:
    return {
        "name": name,
        "title": event_type,
        "summary": summary,
        "contentType": "application/json",
        "headers": {
            "allOf": [
                {"$ref": COMPONENT_REF + headers},
                {"properties": {f"{HEADER_PREFIX}type": {"const": event_type}}},
            ]
        },
        "payload": {"$ref": COMPONENT_REF + payload},
    }


def _camel(*words: str) -> str:
    return words[0] + "".join(word.capitalize() for word in words[1:])


def build_document() -> dict[str, Any]:
    """The whole AsyncAPI document as a JSON-ready dict (deterministic)."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    record_messages: list[str] = []
    for kind in RecordKind:
        payload = event_schema(kind.value)
        schemas[payload["title"]] = _hoist(payload, schemas)
        for action, schema_name, verb in (
            ("upserted", payload["title"], "created or changed"),
            ("withdrawn", "Tombstone", "withdrawn or made private: a tombstone"),
        ):
            message_id = _camel(kind.value, action)
            messages[message_id] = _message(
                message_id,
                record_event_type(kind, action),
                schema_name,
                RECORD_HEADERS,
                f"A {kind.value} was {verb}.",
            )
            record_messages.append(message_id)
    schemas["Tombstone"] = _hoist(event_schema(TOMBSTONE), schemas)
    for model in (MatchResponse, MatchProposal, Heartbeat, ResyncRequest):
        schemas[model.__name__] = _hoist(_model_schema(model), schemas)
    messages["matchResponded"] = _message(
        "matchResponded",
        RESPONSE_TYPE,
        "MatchResponse",
        RECORD_HEADERS,
        "A centre accepted, declined or advanced a match proposal.",
    )
    record_messages.append("matchResponded")
    route_messages = []
    for status in ("proposed", "retracted"):
        message_id = _camel("match", status)
        messages[message_id] = _message(
            message_id,
            f"org.ctta.match.{status}.v1",
            "MatchProposal",
            ROUTE_HEADERS,
            f"The hub {status} a match between a demand and an achievement.",
        )
        route_messages.append(message_id)
    messages["resyncRequested"] = _message(
        "resyncRequested",
        RESYNC_TYPE,
        "ResyncRequest",
        ROUTE_HEADERS,
        "The hub's index differs from the centre's manifest: re-publish the records of the "
        "buckets whose summary differs.",
    )
    messages["heartbeat"] = {
        "name": "heartbeat",
        "title": "Heartbeat",
        "summary": "A node is alive (core NATS, no JetStream, no envelope).",
        "contentType": "application/json",
        "payload": {"$ref": COMPONENT_REF + "Heartbeat"},
    }
    envelope_attributes = list(_model_schema(Envelope)["properties"])
    schemas[RECORD_HEADERS] = _headers_schema(
        envelope_attributes,
        RECORD_HEADERS,
        "CloudEvents 1.0 binary mode, signed by the owning centre.",
        "Equals `ce-id`",
    )
    schemas[ROUTE_HEADERS] = _headers_schema(
        list(ROUTE_ATTRIBUTES),
        ROUTE_HEADERS,
        "CloudEvents 1.0 binary mode, from the hub.",
        "`<matchId>.<revision>.<centre>` for a match route, the request id for a resync: "
        "the same for every retry",
    )
    centre = {
        "description": "Centre id: a lowercase slug",
        "enum": [c.id for c in CENTRES],
    }
    channels = {
        "recordEvents": {
            "address": f"{EVENTS_ROOT}.{{centre}}.{{kind}}.{{id}}",
            "title": "Record events",
            "description": "State of each record owned by a centre; one subject per record. "
            "Stream CTTA_EVENTS keeps the newest messages per subject: the catalogue.",
            "parameters": {
                "centre": centre,
                "kind": {
                    "description": "Record kind, or `response` for match responses",
                    "enum": [kind.value for kind in RecordKind] + [RESPONSE_KIND],
                },
                "id": {"description": "Record ULID, or the match id of a response"},
            },
            "messages": {
                name: {"$ref": f"#/components/messages/{name}"} for name in record_messages
            },
        },
        "matchRoutes": {
            "address": f"{ROUTES_ROOT}.{{centre}}.match.{{matchId}}",
            "title": "Match routes",
            "description": "Hub to centre: match proposals and their updates (stream CTTA_ROUTES).",
            "parameters": {
                "centre": centre,
                "matchId": {"description": "Deterministic match id `m<24 hex>`"},
            },
            "messages": {
                name: {"$ref": f"#/components/messages/{name}"} for name in route_messages
            },
        },
        "resyncRoutes": {
            "address": f"{ROUTES_ROOT}.{{centre}}.resync.{{requestId}}",
            "title": "Resync requests",
            "description": "Hub to centre, from anti-entropy: the hub's index differs from the "
            "manifest in the centre's heartbeat (stream CTTA_ROUTES).",
            "parameters": {
                "centre": centre,
                "requestId": {"description": "ULID of the request"},
            },
            "messages": {"resyncRequested": {"$ref": "#/components/messages/resyncRequested"}},
        },
        "heartbeats": {
            "address": f"{HEARTBEAT_ROOT}.{{centre}}",
            "title": "Heartbeats",
            "description": "Liveness of each centre's node, every few seconds, with the "
            "count and digest of what it publishes (anti-entropy).",
            "parameters": {"centre": centre},
            "messages": {"heartbeat": {"$ref": "#/components/messages/heartbeat"}},
        },
    }
    operations = {
        f"receive{channel[0].upper()}{channel[1:]}": {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "messages": [
                {"$ref": f"#/channels/{channel}/messages/{name}"}
                for name in channels[channel]["messages"]
            ],
        }
        for channel, summary in (
            (
                "recordEvents",
                "Follow the federation catalogue (durable pull consumer, explicit ack).",
            ),
            ("matchRoutes", "A centre receives the proposals routed to it."),
            ("resyncRoutes", "A centre re-publishes what the hub's index misses."),
            ("heartbeats", "Watch which nodes are alive."),
        )
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "CTTA backbone",
            "version": API_VERSION,
            "description": "Events of the China Technology Transfer Alliance backbone. "
            "Verify every record event's signature against the federation registry; "
            "see docs/integrators.md.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "A single-server backbone (`ctta backbone init`).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def render() -> str:
    """The committed text: stable key order and a final newline, so diffs stay small."""
    return json.dumps(build_document(), ensure_ascii=False, indent=2) + "\n"
