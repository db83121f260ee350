"""A whole federation inside one Python process, for benchmarks and experiments.

Apps run their lifespans (relay, indexer, matcher) and are reached through
`httpx.ASGITransport`, so no ports are needed; only nats-server is a separate process.
The demo uses real uvicorn servers instead (see `demo.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from ctta.hub.app import create_app as create_hub
from ctta.hub.settings import HubSettings
from ctta.node.app import create_app as create_node
from ctta.node.settings import NodeSettings
from ctta.protocol import backbone
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.signing import SigningKey
from ctta.protocol.taxonomy import CENTRES


@contextlib.asynccontextmanager
async def serving(app: FastAPI, base_url: str = "http://local") -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan and give a client that talks to it in process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=60) as client:
            yield client


@dataclass
class LocalFederation:
    nodes: dict[str, httpx.AsyncClient]
    hub: httpx.AsyncClient
    hub_app: FastAPI
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        nats_url: str,
        data_dir: Path,
        *,
        token: str,
        centres: list[str] | None = None,
        hub_settings: dict[str, Any] | None = None,
        node_settings: dict[str, Any] | None = None,
        keys: dict[str, SigningKey] | None = None,
    ) -> AsyncIterator[LocalFederation]:
        """Provision the backbone, start the hub and the nodes, wait until all joined NATS.

        `keys` lets a benchmark sign events of its own as the centres (new keys otherwise)."""
        nc = await backbone.connect(nats_url, "local-provision")
        try:
            await backbone.provision_single_server(nc.jetstream())
        finally:
            await nc.close()
        centres = centres or [centre.id for centre in CENTRES]
        keys = keys or {centre: SigningKey.generate(f"{centre}#local") for centre in centres}
        registry = FederationRegistry.alliance()
        for centre, key in keys.items():
            entry = registry.centre(centre)
            assert entry is not None, centre
            entry.keys[key.key_id] = key.public_key_b64()
        registry.save(data_dir / "federation.json")
        node_apps = {
            centre: create_node(
                NodeSettings(
                    centre=centre,
                    data_dir=data_dir,
                    nats_url=nats_url,
                    signing_key_id=key.key_id,
                    signing_key_seed=SecretStr(key.seed_b64()),
                    staff_tokens=[SecretStr(token)],
                    # Benchmarks write as fast as they can with one token: no rate limit.
                    **({"write_rate_per_second": 0} | (node_settings or {})),
                )
            )
            for centre, key in keys.items()
        }
        hub_app = create_hub(
            HubSettings(
                data_dir=data_dir,
                nats_url=nats_url,
                registry_file=data_dir / "federation.json",
                reader_tokens=[SecretStr(token)],
                **(hub_settings or {}),
            )
        )
        async with contextlib.AsyncExitStack() as stack:
            nodes = {
                c: await stack.enter_async_context(serving(app)) for c, app in node_apps.items()
            }
            hub = await stack.enter_async_context(serving(hub_app))
            federation = cls(nodes, hub, hub_app, token)
            await federation.wait_connected()
            yield federation

    async def wait_connected(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = [
                (await client.get("/healthz")).json()["nats"]
                for client in (*self.nodes.values(), self.hub)
            ]
            if all(state == "connected" for state in states):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every part joined NATS: {states}")
            await asyncio.sleep(0.1)
