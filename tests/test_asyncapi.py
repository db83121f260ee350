"""The committed AsyncAPI document is what the protocol models generate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ctta.protocol.asyncapi import build_document, render
from ctta.protocol.schemas import event_schema

DOCUMENT = Path(__file__).parent.parent / "docs" / "asyncapi.json"
CTTA = str(Path(sys.executable).parent / "ctta")


def test_committed_document_matches_the_models() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == render(), (
        "docs/asyncapi.json drifted from the models: run "
        "`ctta schemas asyncapi --output docs/asyncapi.json` and commit it"
    )


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            ref for v in node.values() for ref in _refs(v)
        ]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_every_reference_resolves_and_no_pydantic_defs_remain() -> None:
    document = build_document()
    for ref in _refs(document):
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
    assert "$defs" not in json.dumps(document)


def test_channels_headers_and_payloads_follow_the_contract() -> None:
    document = build_document()
    addresses = {name: channel["address"] for name, channel in document["channels"].items()}
    assert addresses == {
        "recordEvents": "ctta.v1.evt.{centre}.{kind}.{id}",
        "matchRoutes": "ctta.v1.route.{centre}.match.{matchId}",
        "resyncRoutes": "ctta.v1.route.{centre}.resync.{requestId}",
        "heartbeats": "ctta.v1.hb.{centre}",
    }
    assert {op["action"] for op in document["operations"].values()} == {"receive"}
    components = document["components"]
    upserted = components["messages"]["achievementUpserted"]
    assert upserted["payload"] == {"$ref": "#/components/schemas/PublishedAchievement"}
    headers = components["schemas"]["CloudEventHeaders"]
    assert {"ce-id", "ce-signature", "ce-keyid", "ce-sequence", "Nats-Msg-Id"} <= set(
        headers["required"]
    )
    achievement = components["schemas"]["PublishedAchievement"]
    assert set(achievement["properties"]) == set(event_schema("achievement")["properties"])
    withdrawn = components["messages"]["demandWithdrawn"]
    assert withdrawn["headers"]["allOf"][1]["properties"]["ce-type"] == {
        "const": "org.ctta.demand.withdrawn.v1"
    }


def test_cli_writes_the_document(tmp_path: Path) -> None:
    output = tmp_path / "asyncapi.json"
    result = subprocess.run(
        [CTTA, "schemas", "asyncapi", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert output.read_text(encoding="utf-8") == render()
