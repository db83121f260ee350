"""JSON Schema export of every event payload, named as in the events' `dataschema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ctta.protocol.matches import MatchProposal, MatchResponse
from ctta.protocol.records import PUBLISHED_MODELS, Tombstone
from ctta.protocol.searches import SavedSearch, SearchAlert, SearchWithdrawn
from ctta.protocol.taxonomy import RecordKind

TOMBSTONE = "tombstone"
OTHER_PAYLOADS: dict[str, type[BaseModel]] = {
    TOMBSTONE: Tombstone,
    "response": MatchResponse,
    "match": MatchProposal,
    "search": SavedSearch,
    "search-withdrawn": SearchWithdrawn,
    "alert": SearchAlert,
}


def schema_names() -> list[str]:
    return [kind.value for kind in RecordKind] + list(OTHER_PAYLOADS)


def event_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one payload; KeyError for an unknown name."""
    model = OTHER_PAYLOADS.get(name) or PUBLISHED_MODELS[RecordKind(name)]
    schema = model.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def export(directory: Path) -> list[Path]:
    """Write `<name>.json` for every payload; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in schema_names():
        path = directory / f"{name}.json"
        path.write_text(
            json.dumps(event_schema(name), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        written.append(path)
    return written
