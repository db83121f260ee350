"""Fixtures that start real parts: nats-server from the wheel, SQLite files, PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from ctta.deploy.natsserver import NatsServer, free_port
from ctta.hub.settings import HubSettings
from ctta.node.settings import NodeSettings
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.signing import SigningKey
from tests.support import Federation

PG_ADMIN = os.environ.get("CTTA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
STAFF_TOKEN = "staff-token-for-tests-0123456789"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh JetStream server per test, so tests never see each other's streams."""
    server = NatsServer(free_port(), tmp_path / "nats").start()
    yield server
    server.stop()


def _create_database() -> str:
    name = f"ctta_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_database() -> Iterator[Callable[[], str]]:
    """Factory of new, empty PostgreSQL databases on this machine, dropped afterwards."""
    created: list[str] = []

    def make() -> str:
        try:
            name = _create_database()
        except psycopg.OperationalError as exc:
            raise RuntimeError(
                f"PostgreSQL at {PG_ADMIN} is needed (see README; .ci/run starts it): {exc}"
            ) from exc
        created.append(name)
        return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"

    yield make
    for name in created:
        _drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The node and hub contract suites run against both stores."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_database")()


@pytest.fixture
def federation_keys() -> dict[str, SigningKey]:
    return {
        centre: SigningKey.generate(f"{centre}#test") for centre in ("eastern", "southern", "ocean")
    }


@pytest.fixture
def registry_file(tmp_path: Path, federation_keys: dict[str, SigningKey]) -> Path:
    registry = FederationRegistry.alliance()
    for centre, key in federation_keys.items():
        entry = registry.centre(centre)
        assert entry is not None
        entry.keys[key.key_id] = key.public_key_b64()
    path = tmp_path / "federation.json"
    registry.save(path)
    return path


@pytest.fixture
def node_settings(tmp_path: Path, federation_keys: dict[str, SigningKey]):
    """Factory: settings of a node of `centre`, on its own SQLite file unless a URL is given."""

    def make(centre: str, nats_url: str, database_url: str | None = None) -> NodeSettings:
        key = federation_keys[centre]
        return NodeSettings(
            centre=centre,
            data_dir=tmp_path / "data",
            database_url=database_url or f"sqlite:///{tmp_path / f'node-{centre}.db'}",
            nats_url=nats_url,
            signing_key_id=key.key_id,
            signing_key_seed=SecretStr(key.seed_b64()),
            staff_tokens=[SecretStr(STAFF_TOKEN)],
            heartbeat_seconds=0.5,
        )

    return make


@pytest.fixture
def hub_settings(tmp_path: Path, registry_file: Path):
    def make(nats_url: str, database_url: str | None = None) -> HubSettings:
        return HubSettings(
            data_dir=tmp_path / "data",
            database_url=database_url or f"sqlite:///{tmp_path / 'hub.db'}",
            nats_url=nats_url,
            registry_file=registry_file,
            reader_tokens=[SecretStr(STAFF_TOKEN)],
            heartbeat_timeout_seconds=5,
        )

    return make


@pytest.fixture
async def federation(
    nats_server: NatsServer, node_settings, hub_settings
) -> AsyncIterator[Federation]:
    """Nodes of eastern and southern plus the hub, in this process, on a provisioned backbone."""
    async with Federation.start(
        nats_server,
        [node_settings(c, nats_server.url) for c in ("eastern", "southern")],
        hub_settings(nats_server.url),
    ) as running:
        yield running
