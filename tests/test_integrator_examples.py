"""The integrator guide's examples run against a real nats-server with nodes publishing."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest

from ctta.protocol.registry import FederationRegistry
from docs.examples.follow_demands import DemandBoard, follow
from docs.examples.verify_archive import verify_archive
from tests.support import STAFF, Federation, achievement_body, demand_body, eventually
from tests.test_sdk import _on_stream

DOCS = Path(__file__).parent.parent / "docs"
CTTA = str(Path(sys.executable).parent / "ctta")


async def ctta(*args: str) -> tuple[int, str, str]:
    """Run the CLI without blocking the loop the in-process nodes run on."""
    process = await asyncio.create_subprocess_exec(
        CTTA, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, stdout.decode(), stderr.decode()


async def publish(federation: Federation) -> dict[str, str]:
    """Two demands and an achievement, on the stream."""
    ids = {
        "east-demand": await _create(federation, "eastern", "/api/v1/demands", demand_body()),
        "south-demand": await _create(federation, "southern", "/api/v1/demands", demand_body()),
        "offer": await _create(federation, "eastern", "/api/v1/achievements", achievement_body()),
    }
    await eventually(lambda: _on_stream(federation, list(ids.values())))
    return ids


async def _create(federation: Federation, centre: str, path: str, body: dict) -> str:
    response = await federation.nodes[centre].post(path, json=body, headers=STAFF)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_the_guide_shows_the_example_files_verbatim() -> None:
    guide = (DOCS / "integrators.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n# (docs/examples/\S+)\n(.*?)```", guide, re.DOTALL)
    assert {path for path, _ in blocks} == {
        "docs/examples/follow_demands.py",
        "docs/examples/verify_archive.py",
    }
    for path, code in blocks:
        assert (DOCS.parent / path).read_text(encoding="utf-8") == code, path


async def test_demand_board_follows_and_resumes(
    federation: Federation, registry_file: Path
) -> None:
    ids = await publish(federation)
    board = DemandBoard()
    await follow(federation.nats.url, str(registry_file), board, stop_after=2)
    assert {record_id for _, record_id in board.demands} == {
        ids["east-demand"],
        ids["south-demand"],
    }

    withdrawn = await federation.nodes["southern"].delete(
        f"/api/v1/demands/{ids['south-demand']}", headers=STAFF
    )
    assert withdrawn.status_code == 200, withdrawn.text
    await follow(federation.nats.url, str(registry_file), board, stop_after=1)
    assert list(board.demands) == [("eastern", ids["east-demand"])], "resumed at the tombstone"


async def test_cli_tail_and_replay_then_verify_the_archive(
    federation: Federation, registry_file: Path, tmp_path: Path
) -> None:
    ids = await publish(federation)
    common = ["--nats-url", federation.nats.url, "--registry", str(registry_file)]

    code, table, stderr = await ctta(
        "events", "tail", "--from-beginning", "--kind", "demand", "--count", "2", *common
    )
    assert code == 0, stderr
    header, *rows = table.splitlines()
    assert header.split() == [
        "time",
        "centre",
        "kind",
        "id",
        "version",
        "action",
        "verified",
        "title",
    ]
    assert {row.split()[3] for row in rows} == {ids["east-demand"], ids["south-demand"]}
    assert all(" yes " in row and "电动客车电池热管理" in row for row in rows)

    code, lines, stderr = await ctta(
        "events",
        "tail",
        "--from-beginning",
        "--centre",
        "eastern",
        "--json",
        "--count",
        "2",
        *common,
    )
    assert code == 0, stderr
    events = [json.loads(line) for line in lines.splitlines()]
    assert {e["centre"] for e in events} == {"eastern"} and all(e["verified"] for e in events)

    archive = tmp_path / "events.jsonl"
    code, _, stderr = await ctta("events", "replay", "--output", str(archive), *common)
    assert code == 0, stderr
    assert "3 events written, 0 unverified skipped" in stderr
    assert verify_archive(archive, FederationRegistry.load(registry_file)) == (3, [])

    forged = archive.read_text(encoding="utf-8").replace("Tsinghua University", "Forged Ltd")
    archive.write_text(forged, encoding="utf-8")
    good, problems = verify_archive(archive, FederationRegistry.load(registry_file))
    assert good == 2 and len(problems) == 1 and "bad signature" in problems[0]


@pytest.mark.parametrize(
    "command", [["events", "tail"], ["events", "replay"], ["schemas", "asyncapi"]]
)
async def test_new_subcommands_have_help(command: list[str]) -> None:
    code, stdout, _ = await ctta(*command, "--help")
    assert code == 0 and "usage: ctta" in stdout
