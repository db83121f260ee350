"""The `ctta` command: help on every subcommand, provisioning and keys against real parts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nats
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from ctta.deploy.natsserver import NatsServer
from ctta.hub.app import MIGRATIONS as HUB_MIGRATIONS
from ctta.node.app import MIGRATIONS as NODE_MIGRATIONS
from ctta.protocol.registry import FederationRegistry
from ctta.server.db import create_db_engine, migrate

CTTA = str(Path(sys.executable).parent / "ctta")
NODE_TABLES = {
    "api_token",
    "audit_entry",
    "record",
    "outbox_event",
    "inbox_match",
    "saved_search",
    "search_alert",
    "dead_letter",
}
HUB_TABLES = {
    "indexed_record",
    "dead_letter",
    "centre_heartbeat",
    "standing_query",
    "match",
    "record_vector",
    "webhook",
    "webhook_delivery",
    "outbox_event",
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CTTA, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["demo"],
        ["node"],
        ["hub"],
        ["hub", "rebuild"],
        ["backbone", "init"],
        ["keys", "generate"],
        ["schemas", "export"],
    ],
)
def test_every_subcommand_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0 and "usage: ctta" in result.stdout


async def test_backbone_init_is_idempotent(nats_server: NatsServer) -> None:
    first = run("backbone", "init", "--nats-url", nats_server.url)
    second = run("backbone", "init", "--nats-url", nats_server.url)
    assert first.returncode == 0, first.stderr
    assert "CTTA_EVENTS: created" in first.stdout and "CTTA_EVENTS: updated" in second.stdout
    assert "CTTA_EVENTS/hub-indexer: exists" in second.stdout
    nc = await nats.connect(nats_server.url)
    info = await nc.jetstream().stream_info("CTTA_EVENTS")
    await nc.close()
    assert info.config.subjects == ["ctta.v1.evt.>"] and info.config.max_msgs_per_subject == 5


def test_keys_generate_adds_the_public_key(tmp_path: Path) -> None:
    registry = tmp_path / "federation.json"
    result = run("keys", "generate", "--centre", "ocean", "--registry", str(registry))
    assert result.returncode == 0, result.stderr
    key_id = result.stdout.splitlines()[0].removeprefix("CTTA_SIGNING_KEY_ID=")
    entry = FederationRegistry.load(registry).centre("ocean")
    assert entry is not None and key_id.startswith("ocean#") and key_id in entry.keys


@pytest.mark.parametrize(
    ("location", "tables"), [(NODE_MIGRATIONS, NODE_TABLES), (HUB_MIGRATIONS, HUB_TABLES)]
)
def test_migrations_match_the_models(tmp_path: Path, location: Path, tables: set[str]) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine, location)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = [
            change
            for change in compare_metadata(context, SQLModel.metadata)
            if _table_of(change) in tables
        ]
    assert diff == []


def _table_of(change: object) -> str | None:
    item = change[0] if isinstance(change, list) else change
    for part in item[1:] if isinstance(item, tuple) else ():
        name = getattr(part, "name", None) if not isinstance(part, str) else None
        table = getattr(part, "table", None)
        if table is not None:
            return table.name
        if name is not None and hasattr(part, "columns"):
            return name
    return (
        item[2] if isinstance(item, tuple) and len(item) > 2 and isinstance(item[2], str) else None
    )
