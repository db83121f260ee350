"""`ctta demo`: the whole federation on one machine.

Its own nats-server (never port 4222), the hub and all eleven centre nodes on SQLite in
one process, sample records loaded through the real node API on the first start, and
the same data reused on the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx
import nats
import uvicorn
from pydantic import SecretStr

from ctta.deploy.keys import ensure_keys
from ctta.deploy.natsserver import NatsServer
from ctta.hub.app import create_app as create_hub
from ctta.hub.settings import HubSettings
from ctta.node.app import create_app as create_node
from ctta.node.records.views import PLURALS
from ctta.node.settings import NodeSettings
from ctta.protocol import backbone
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.taxonomy import CENTRES, RecordKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path
    token: str | None = None
    host: str = "127.0.0.1"
    hub_port: int = 8700
    nats_port: int = 4333
    centres: tuple[str, ...] = tuple(centre.id for centre in CENTRES)


class _Server(uvicorn.Server):
    """Signals are handled once for all servers by the demo, not by each server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def sample_records(centre: str) -> list[dict]:
    """The bundled sample records of one centre (see deploy/sample/)."""
    path = resources.files("ctta.deploy") / "sample" / f"{centre}.json"
    return json.loads(path.read_text(encoding="utf-8"))["records"]


def _staff_token(options: DemoOptions) -> str:
    if options.token:
        return options.token
    path = options.data_dir / "staff-token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24) + "\n", encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


async def _load_samples(client: httpx.AsyncClient, node_url: str, centre: str, token: str) -> int:
    """Create the sample records through the node API unless the node already has records."""
    headers = {"Authorization": f"Bearer {token}"}
    existing = 0
    for kind in RecordKind:
        response = await client.get(
            f"{node_url}/api/v1/{PLURALS[kind]}", params={"limit": 1}, headers=headers
        )
        response.raise_for_status()
        existing += len(response.json()["items"])
    if existing:
        return 0
    created = 0
    for item in sample_records(centre):
        body = {**item["content"], "private": item.get("private")}
        response = await client.post(
            f"{node_url}/api/v1/{PLURALS[RecordKind(item['kind'])]}", json=body, headers=headers
        )
        if response.status_code != 201:
            raise RuntimeError(
                f"sample record of {centre} refused: {response.status_code} {response.text}"
            )
        created += 1
    return created


async def run_demo(options: DemoOptions) -> None:
    started = time.monotonic()
    options.data_dir.mkdir(parents=True, exist_ok=True)
    token = _staff_token(options)
    nats_server = NatsServer(
        options.nats_port, options.data_dir / "nats", log_file=options.data_dir / "nats-server.log"
    ).start()
    servers: list[_Server] = []
    try:
        registry_file = options.data_dir / "federation.json"
        registry = (
            FederationRegistry.load(registry_file)
            if registry_file.exists()
            else FederationRegistry.alliance()
        )
        keys = ensure_keys(registry, options.data_dir / "signing-keys.json", list(options.centres))
        hub_url = f"http://{options.host}:{options.hub_port}"
        node_urls = {
            c: f"http://{options.host}:{options.hub_port + 1 + i}"
            for i, c in enumerate(options.centres)
        }
        for centre_id, url in node_urls.items():
            entry = registry.centre(centre_id)
            assert entry is not None
            entry.node_url = url
        registry.save(registry_file)

        nc = await nats.connect(nats_server.url)
        try:
            await backbone.provision_single_server(nc.jetstream())
        finally:
            await nc.close()

        hub_settings = HubSettings(
            data_dir=options.data_dir,
            nats_url=nats_server.url,
            registry_file=registry_file,
            reader_tokens=[SecretStr(token)],
        )
        apps = [(create_hub(hub_settings), options.hub_port)]
        for centre_id, url in node_urls.items():
            settings = NodeSettings(
                centre=centre_id,
                data_dir=options.data_dir,
                nats_url=nats_server.url,
                hub_url=hub_url,
                public_url=url,
                signing_key_id=keys[centre_id].key_id,
                signing_key_seed=SecretStr(keys[centre_id].seed_b64()),
                staff_tokens=[SecretStr(token)],
            )
            apps.append((create_node(settings), int(url.rsplit(":", 1)[1])))
        servers = [
            _Server(
                uvicorn.Config(app, host=options.host, port=port, log_config=None, lifespan="on")
            )
            for app, port in apps
        ]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: [setattr(s, "should_exit", True) for s in servers])
        serving = [asyncio.create_task(server.serve()) for server in servers]
        while not all(server.started for server in servers):
            if any(task.done() for task in serving):
                await asyncio.gather(*serving)
                raise RuntimeError("a demo service failed to start; is a port already in use?")
            await asyncio.sleep(0.05)

        async with httpx.AsyncClient(timeout=30) as client:
            loaded = await asyncio.gather(
                *(_load_samples(client, url, c, token) for c, url in node_urls.items())
            )
        print(
            f"\nCTTA demo ready in {time.monotonic() - started:.1f}s "
            f"(data in {options.data_dir.resolve()})"
        )
        if sum(loaded):
            print(f"  loaded {sum(loaded)} sample records through the node APIs")
        print(f"  NATS      {nats_server.url}")
        print(f"  hub       {hub_url}   docs: {hub_url}/docs")
        for centre_id, url in node_urls.items():
            print(f"  {centre_id:<13}{url}   docs: {url}/docs")
        print(f"  staff token: {token}")
        print(f"  try: curl '{hub_url}/api/v1/search?q=电池'")
        print("Ctrl-C stops everything.\n", flush=True)
        await asyncio.gather(*serving)
    finally:
        for server in servers:
            server.should_exit = True
        print("stopping the demo's nats-server ...", flush=True)
        nats_server.stop()
        print("CTTA demo stopped.", flush=True)
