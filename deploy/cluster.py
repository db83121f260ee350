"""The production topology on one machine, for the tests and benchmarks: a three-server
hub cluster and a leaf per centre on loopback, rendered by `ctta.deploy.topology` with
real NKeys, plus a TCP link standing for a centre's WAN connection, which can be cut."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient

from ctta.deploy.keys import NKeyUser, ensure_nkeys
from ctta.deploy.natsserver import NatsServer, free_ports
from ctta.deploy.topology import (
    HUB_USER,
    ServerKeys,
    Topology,
    backbone_users,
    render_all,
)
from ctta.protocol import backbone


@dataclass
class Link:
    """A TCP proxy standing for a centre's WAN link to the hub: `cut()` drops it (the leaf
    keeps running and accepting writes), `restore()` lets the leaf dial in again."""

    target_port: int
    port: int
    _server: asyncio.Server | None = None
    _pipes: set[asyncio.StreamWriter] = field(default_factory=set)

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._pipes |= {writer, up_writer}
        # Ends when either side closes; a cancellation at loop shutdown ends it too, quietly
        # (asyncio's stream server would otherwise log it as an error of the callback).
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
            )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._pipes.discard(writer)
            writer.transport.abort()


@dataclass
class LeafBackbone:
    topology: Topology
    users: dict[str, NKeyUser]
    servers: dict[str, NatsServer]
    links: dict[str, Link]

    @property
    def hub_url(self) -> str:
        return self.topology.hub_url

    @property
    def hub_seed(self) -> str:
        return self.users[HUB_USER].seed

    def leaf_url(self, centre: str) -> str:
        return self.topology.leaf(centre).client_url

    def hub_server(self, name: str) -> NatsServer:
        return self.servers[name]

    async def connect_hub(self, seed: str | None = None, **options: object) -> NatsClient:
        return await nats.connect(
            self.hub_url.split(","), nkeys_seed_str=seed or self.hub_seed, **options
        )

    async def provision(self, timeout: float = 120.0) -> dict[str, str]:
        """`ctta backbone init --topology leaf`, retried while the cluster elects a leader
        and the leaves dial in."""
        nc = await self.connect_hub(inbox_prefix=backbone.PROVISIONING_INBOX)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    outcome = await backbone.provision_leaf_topology(nc, self.topology.centres)
                except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
                    outcome = {"hub": "unreachable"}
                if not any(v.startswith("unreachable") for v in outcome.values()):
                    return outcome
                if time.monotonic() > deadline:
                    raise AssertionError(f"backbone not provisioned: {outcome}\n{self.logs()}")
                await asyncio.sleep(0.5)
        finally:
            await nc.close()

    def logs(self, lines: int = 15) -> str:
        """The tail of every server's log: what to read when the backbone misbehaves."""
        tails = []
        for name, server in self.servers.items():
            if server.log_file is not None and server.log_file.exists():
                tail = server.log_file.read_text(errors="replace").splitlines()[-lines:]
                tails.append(f"--- {name}\n" + "\n".join(tail))
        return "\n".join(tails)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@contextlib.contextmanager
def started(
    base: Path, centres: list[str], integrators: tuple[str, ...] = (), linked: tuple[str, ...] = ()
) -> Iterator[LeafBackbone]:
    """Render with real keys, start every server; centres in `linked` reach the hub only
    through a `Link` (to hub-1), which the caller must `restore()` to connect them."""
    ports = iter(free_ports(Topology.loopback_ports(len(centres)) + len(linked)))
    topology = Topology.loopback(centres, ports, integrators)
    links = {c: Link(topology.hub_servers[0].leaf_port, next(ports)) for c in linked}
    leaves = tuple(
        replace(leaf, remote_urls=(f"nats-leaf://127.0.0.1:{links[leaf.centre].port}",))
        if leaf.centre in links
        else leaf
        for leaf in topology.leaves
    )
    topology = replace(topology, leaves=leaves)
    users = ensure_nkeys(base / "nkeys.json", backbone_users(topology))
    configs = render_all(topology, ServerKeys.from_users(users, topology), lambda n: str(base / n))
    configs.write(base / "conf")
    names = [s.name for s in topology.hub_servers] + [f"leaf-{c}" for c in topology.centres]
    ports = [s.client_port for s in topology.hub_servers] + [
        leaf.client_port for leaf in topology.leaves
    ]
    servers = {
        name: NatsServer(
            port,
            base / name,
            log_file=base / f"{name}.log",
            config_file=base / "conf" / f"{name}.conf",
        )
        for name, port in zip(names, ports, strict=True)
    }
    running = LeafBackbone(topology, users, servers, links)
    try:
        for server in servers.values():
            server.start()
        yield running
    finally:
        running.stop()


@contextlib.asynccontextmanager
async def leaf_backbone(
    base: Path, centres: list[str], **options: object
) -> AsyncIterator[LeafBackbone]:
    with started(base, centres, **options) as running:  # type: ignore[arg-type]
        for link in running.links.values():
            await link.restore()
        try:
            await running.provision()
            yield running
        finally:
            for link in running.links.values():
                await link.cut()
