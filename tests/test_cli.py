"""The `ctta` command: help on every subcommand, provisioning and keys against real parts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import SecretStr
from sqlmodel import SQLModel

from ctta.deploy.local import serving
from ctta.deploy.natsserver import NatsServer, free_port
from ctta.hub.app import MIGRATIONS as HUB_MIGRATIONS
from ctta.node.app import MIGRATIONS as NODE_MIGRATIONS
from ctta.node.app import create_app as create_node
from ctta.node.settings import NodeSettings
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.signing import SigningKey
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
    "centre_sync",
    "standing_query",
    "match",
    "record_vector",
    "webhook",
    "webhook_delivery",
    "outbox_event",
}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CTTA, *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["demo"],
        ["node"],
        ["node", "token"],
        ["hub"],
        ["hub", "rebuild"],
        ["backbone", "init"],
        ["keys", "generate"],
        ["keys", "init"],
        ["deploy", "render"],
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


async def test_node_token_issue_prints_a_token_the_node_accepts(tmp_path: Path) -> None:
    key = SigningKey.generate("eastern#cli")
    env = os.environ | {
        "CTTA_CENTRE": "eastern",
        "CTTA_DATABASE_URL": f"sqlite:///{tmp_path / 'node.db'}",
        "CTTA_SIGNING_KEY_ID": key.key_id,
        "CTTA_SIGNING_KEY_SEED": key.seed_b64(),
        "CTTA_NATS_URL": f"nats://127.0.0.1:{free_port()}",  # nobody there: not needed
    }
    result = run("node", "token", "--role", "admin", "--label", "operator", env=env)
    assert result.returncode == 0, result.stderr
    token = result.stdout.splitlines()[-1]
    settings = NodeSettings(
        centre="eastern",
        database_url=env["CTTA_DATABASE_URL"],
        signing_key_id=key.key_id,
        signing_key_seed=SecretStr(key.seed_b64()),
        nats_url=env["CTTA_NATS_URL"],
    )
    async with serving(create_node(settings)) as node:
        audit = await node.get("/api/v1/audit", headers={"Authorization": f"Bearer {token}"})
        assert audit.status_code == 200, audit.text
        assert audit.json()["items"][0]["actor_label"] == "command line"
        refused = await node.get("/api/v1/audit", headers={"Authorization": "Bearer ctta_nope"})
        assert refused.status_code == 401
    assert token not in (tmp_path / "node.db").read_bytes().decode(errors="replace")


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
