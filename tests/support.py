"""Test helpers: apps running in-process with their lifespans, and sample bodies."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats
from fastapi import FastAPI

from ctta.deploy.local import serving
from ctta.deploy.natsserver import NatsServer
from ctta.hub.app import create_app as create_hub
from ctta.hub.settings import HubSettings
from ctta.node.app import create_app as create_node
from ctta.node.settings import NodeSettings
from ctta.protocol import backbone

STAFF = {"Authorization": "Bearer staff-token-for-tests-0123456789"}


async def provision(url: str) -> None:
    nc = await nats.connect(url)
    try:
        await backbone.provision_single_server(nc.jetstream())
    finally:
        await nc.close()


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll `check` until it returns a truthy value; fail with its last value."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(interval)


def achievement_body(
    title_zh: str = "锂电池回收再利用技术",
    title_en: str = "Lithium battery recycling",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "title": {"zh": title_zh, "en": title_en},
        "summary": {
            "zh": "湿法冶金回收锂、钴、镍。",
            "en": "Hydrometallurgical recovery of lithium, cobalt and nickel.",
        },
        "keywords": ["锂电池", "recycling"],
        "fields": ["energy-storage", "environment"],
        "ipc": ["H01M 10/54"],
        "trl": 6,
        "transfer_modes": ["exclusive-licence", "joint-development"],
        "owner_institution": "Tsinghua University",
        "private": {
            "contact_name": "王工",
            "contact_email": "wang@example.cn",
            "notes": "底价 300 万",
        },
        **extra,
    }


def bus_battery_offer(**extra: Any) -> dict[str, Any]:
    """An achievement that matches `demand_body()` across regions, above the threshold."""
    return achievement_body(
        title_zh="电动客车动力电池液冷热管理系统",
        title_en="Liquid-cooled battery thermal management for buses",
        fields=["new-energy-vehicles", "energy-storage"],
        trl=7,
        **extra,
    )


def demand_body(**extra: Any) -> dict[str, Any]:
    return {
        "title": {
            "zh": "电动客车电池热管理",
            "en": "Battery thermal management for electric buses",
        },
        "summary": {"zh": "寻求液冷方案。"},
        "enterprise": "郑州宇通客车",
        "problem_statement": {"zh": "冬季续航下降明显。"},
        "fields": ["new-energy-vehicles"],
        "min_trl": 6,
        "cooperation_modes": ["joint-development"],
        **extra,
    }


@dataclass
class Federation:
    """Running nodes and hub with a client for each."""

    nats: NatsServer
    nodes: dict[str, httpx.AsyncClient]
    node_apps: dict[str, FastAPI]
    hub: httpx.AsyncClient
    hub_app: FastAPI
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls, nats_server: NatsServer, nodes: list[NodeSettings], hub: HubSettings
    ) -> AsyncIterator[Federation]:
        await provision(nats_server.url)
        async with contextlib.AsyncExitStack() as stack:
            node_apps = {settings.centre: create_node(settings) for settings in nodes}
            clients = {
                c: await stack.enter_async_context(serving(app)) for c, app in node_apps.items()
            }
            hub_app = create_hub(hub)
            hub_client = await stack.enter_async_context(serving(hub_app))
            yield cls(nats_server, clients, node_apps, hub_client, hub_app)

    async def search(self, **params: Any) -> dict[str, Any]:
        response = await self.hub.get("/api/v1/search", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def search_ids(self, **params: Any) -> set[str]:
        return {hit["id"] for hit in (await self.search(limit=100, **params))["hits"]}
