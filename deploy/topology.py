"""The production backbone: a three-server hub cluster and one leaf server per centre.

This module renders the nats-server configuration files of that topology. The same
renderer serves the tests (loopback ports, real keys written into the files), `ctta keys
init` (an operator's files) and the compose and Kubernetes manifests under `deploy/`
(container host names, keys as `$VARIABLE` references resolved from the environment),
so what is deployed is what is tested.

Security rests on the leaf credentials (backbone-notes §1.2–1.4): without them a centre
could publish into another centre's stream. A centre's leaf user may publish only its own
events and heartbeat, and may source only its own routes from the hub.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ctta.deploy.keys import NKeyUser, write_private
from ctta.protocol.backbone import EVENTS_STREAM, HUB_DOMAIN, PROVISIONING_INBOX, ROUTES_STREAM
from ctta.protocol.sdk import inbox_prefix
from ctta.protocol.subjects import (
    centre_events,
    centre_routes,
    heartbeat_subject,
    route_delivery,
    source_delivery,
)

ACCOUNT = "CTTA"
SYSTEM_ACCOUNT = "SYS"
CLUSTER_NAME = "ctta-hub"

HUB_USER = "hub"
SYSTEM_USER = "system"


def leaf_user(centre: str) -> str:
    return f"leaf-{centre}"


def integrator_user(name: str) -> str:
    return f"integrator-{name}"


@dataclass(frozen=True)
class HubServer:
    name: str
    host: str
    client_port: int
    cluster_port: int
    leaf_port: int
    monitor_port: int

    @property
    def client_url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"


@dataclass(frozen=True)
class LeafServer:
    centre: str
    host: str
    client_port: int
    monitor_port: int
    # Where this leaf dials the hub, when not the hub servers' own leaf ports (a proxy,
    # a load balancer, a public address).
    remote_urls: tuple[str, ...] = ()

    @property
    def client_url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"


@dataclass(frozen=True)
class Topology:
    """Where every server listens. Keys are not part of it: see `Credentials`."""

    hub_servers: tuple[HubServer, ...]
    leaves: tuple[LeafServer, ...]
    integrators: tuple[str, ...] = ()
    listen_host: str = "0.0.0.0"

    @property
    def centres(self) -> list[str]:
        return [leaf.centre for leaf in self.leaves]

    @property
    def hub_url(self) -> str:
        """The comma-separated client URLs of the hub cluster, as nats-py accepts them."""
        return ",".join(server.client_url for server in self.hub_servers)

    def leaf(self, centre: str) -> LeafServer:
        return next(leaf for leaf in self.leaves if leaf.centre == centre)

    def remote_urls(self, leaf: LeafServer) -> list[str]:
        return list(leaf.remote_urls) or [
            f"nats-leaf://{server.host}:{server.leaf_port}" for server in self.hub_servers
        ]

    @staticmethod
    def loopback_ports(centres: int) -> int:
        """How many ports `loopback` takes: four per hub server, two per leaf."""
        return 4 * 3 + 2 * centres

    @classmethod
    def loopback(
        cls, centres: Iterable[str], ports: Iterator[int], integrators: Iterable[str] = ()
    ) -> Topology:
        """Everything on 127.0.0.1 with ports from `ports`: tests and local trials."""
        hub = tuple(
            HubServer(f"hub-{n}", "127.0.0.1", *(next(ports) for _ in range(4))) for n in (1, 2, 3)
        )
        leaves = tuple(LeafServer(c, "127.0.0.1", next(ports), next(ports)) for c in centres)
        return cls(hub, leaves, tuple(integrators), listen_host="127.0.0.1")

    @classmethod
    def containers(cls, centres: Iterable[str], integrators: Iterable[str] = ()) -> Topology:
        """Service names as host names and the standard ports: compose and Kubernetes."""
        hub = tuple(
            HubServer(f"nats-hub-{n}", f"nats-hub-{n}", 4222, 6222, 7422, 8222) for n in (1, 2, 3)
        )
        leaves = tuple(LeafServer(c, f"nats-{c}", 4222, 8222) for c in centres)
        return cls(hub, leaves, tuple(integrators))


@dataclass(frozen=True)
class ServerKeys:
    """What the configs need to know of the credentials: public keys and each leaf's seed.

    Values are written as given; a value starting with `$` is written bare, so nats-server
    resolves it from the environment (how the committed manifests keep secrets out).
    """

    public: Mapping[str, str]
    leaf_seeds: Mapping[str, str]

    @classmethod
    def from_users(cls, users: Mapping[str, NKeyUser], topology: Topology) -> ServerKeys:
        return cls(
            public={name: user.public_key for name, user in users.items()},
            leaf_seeds={c: users[leaf_user(c)].seed for c in topology.centres},
        )

    @classmethod
    def from_environment(cls, topology: Topology) -> ServerKeys:
        return cls(
            public={user: f"${env_name(user, 'NKEY')}" for user in backbone_users(topology)},
            leaf_seeds=dict.fromkeys(topology.centres, "$CTTA_LEAF_SEED"),
        )


def backbone_users(topology: Topology) -> list[str]:
    """Every NKey user the topology needs: the hub, the system user, a leaf per centre and
    one per integrator."""
    return (
        [HUB_USER, SYSTEM_USER]
        + [leaf_user(c) for c in topology.centres]
        + [integrator_user(n) for n in topology.integrators]
    )


def env_name(user: str, what: str) -> str:
    """`leaf-zhongguancun`, `NKEY` → `CTTA_LEAF_ZHONGGUANCUN_NKEY`."""
    return f"CTTA_{user.upper().replace('-', '_')}_{what}"


# --- permissions -------------------------------------------------------------------


def leaf_permissions(centre: str) -> dict[str, object]:
    """What a centre's leaf connection may carry across to the hub (verified template, §1.4).

    Publish: its own events and heartbeat; the deliveries of the hub's source consumer in
    the centre's domain; creating a consumer on the hub's routes *filtered to this centre*
    (the filter is part of the API subject, which is what pins a centre to its own routes).
    Subscribe: its own JetStream API (the hub creates its source consumer there) and its
    own routes. Replies cross only to provisioning inboxes (`ctta backbone init`); no
    other client's `_INBOX` is readable or writable from a leaf.
    """
    return {
        "publish": {
            "allow": [
                centre_events(centre),
                heartbeat_subject(centre),
                f"{source_delivery(centre)}.>",
                f"$JS.{HUB_DOMAIN}.API.CONSUMER.CREATE.{ROUTES_STREAM}.*.{centre_routes(centre)}",
                "$JS.FC.>",
                "$JSC.R.>",
                f"{PROVISIONING_INBOX}.>",
            ]
        },
        "subscribe": {
            "allow": [
                f"$JS.{centre}.API.>",
                centre_routes(centre),
                f"{route_delivery(centre)}.>",
                "$JS.FC.>",
                "$JSC.R.>",
            ]
        },
    }


def integrator_permissions(name: str) -> dict[str, object]:
    """Consume-only: read and acknowledge its own pre-created consumer, nothing else, with
    replies only to its own inboxes (other clients' fetches stay unreadable)."""
    durable = integrator_durable(name)
    return {
        "publish": {
            "allow": [
                f"$JS.API.CONSUMER.INFO.{EVENTS_STREAM}.{durable}",
                f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{durable}",
                f"$JS.ACK.{EVENTS_STREAM}.{durable}.>",
            ]
        },
        "subscribe": {"allow": [f"{inbox_prefix(durable)}.>"]},
    }


def integrator_durable(name: str) -> str:
    return f"int-{name}"


# --- rendering ---------------------------------------------------------------------


def _value(value: object, indent: int) -> str:
    pad = "  " * indent
    if isinstance(value, str):
        return value if _is_variable(value) else json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        inner = "\n".join(
            f"{pad}  {key}: {_value(item, indent + 1)}" for key, item in value.items()
        )
        return "{\n" + inner + f"\n{pad}}}"
    if isinstance(value, list | tuple):
        inner = "\n".join(f"{pad}  {_value(item, indent + 1)}" for item in value)
        return "[\n" + inner + f"\n{pad}]"
    raise TypeError(f"cannot render {type(value).__name__} in a nats-server config")


def _is_variable(value: str) -> bool:
    """`$CTTA_LEAF_SEED` is a reference; `$JS.FC.>` is a subject."""
    name = value.removeprefix("$")
    return name != value and name.replace("_", "").isalnum() and name.isupper()


def render(config: Mapping[str, object], comment: str) -> str:
    """nats-server's configuration syntax: JSON-like, keys bare, `$VAR` references bare."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"{key}: {_value(value, 0)}" for key, value in config.items()]
    return "\n".join(lines) + "\n"


def hub_server_config(
    topology: Topology, server: HubServer, keys: ServerKeys, store_dir: str
) -> dict[str, object]:
    users: list[dict[str, object]] = [{"nkey": keys.public[HUB_USER]}]
    users += [
        {"nkey": keys.public[leaf_user(c)], "permissions": leaf_permissions(c)}
        for c in topology.centres
    ]
    users += [
        {"nkey": keys.public[integrator_user(n)], "permissions": integrator_permissions(n)}
        for n in topology.integrators
    ]
    host = topology.listen_host
    return {
        "server_name": server.name,
        "listen": f"{host}:{server.client_port}",
        "http": f"{host}:{server.monitor_port}",
        "jetstream": {"domain": HUB_DOMAIN, "store_dir": store_dir},
        "cluster": {
            "name": CLUSTER_NAME,
            "listen": f"{host}:{server.cluster_port}",
            "routes": [
                f"nats-route://{peer.host}:{peer.cluster_port}"
                for peer in topology.hub_servers
                if peer != server
            ],
        },
        # No authorization block here: leaf connections log in as users of the accounts
        # below, so a centre's leaf carries that user's permissions. Leaves dial only the
        # URLs of their own config: advertised cluster-internal addresses would be
        # unreachable through a centre's firewall (and would bypass a configured route).
        "leafnodes": {"listen": f"{host}:{server.leaf_port}", "no_advertise": True},
        "accounts": {
            ACCOUNT: {"jetstream": "enabled", "users": users},
            SYSTEM_ACCOUNT: {"users": [{"nkey": keys.public[SYSTEM_USER]}]},
        },
        "system_account": SYSTEM_ACCOUNT,
    }


def leaf_server_config(
    topology: Topology, leaf: LeafServer, keys: ServerKeys, store_dir: str
) -> dict[str, object]:
    """A centre's own server: its JetStream domain, open only to the centre's own network
    (the node on the same host or pod), dialling out to every hub server."""
    host = topology.listen_host
    return {
        "server_name": f"leaf-{leaf.centre}",
        "listen": f"{host}:{leaf.client_port}",
        "http": f"{host}:{leaf.monitor_port}",
        "jetstream": {"domain": leaf.centre, "store_dir": store_dir},
        "leafnodes": {
            "reconnect": "1s",
            "remotes": [{"urls": topology.remote_urls(leaf), "nkey": keys.leaf_seeds[leaf.centre]}],
        },
    }


@dataclass
class RenderedConfigs:
    files: dict[str, str] = field(default_factory=dict)

    def write(self, directory: Path, mode: int = 0o600) -> list[Path]:
        """Private by default: with real keys, a leaf's file holds its seed."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in sorted(self.files.items()):
            path = directory / name
            write_private(path, text, mode)
            written.append(path)
        return written


def render_all(
    topology: Topology, keys: ServerKeys, store_dir: Callable[[str], str]
) -> RenderedConfigs:
    """Every server's config file by file name (`hub-1.conf`, `leaf-<centre>.conf`)."""
    rendered = RenderedConfigs()
    for server in topology.hub_servers:
        config = hub_server_config(topology, server, keys, store_dir(server.name))
        rendered.files[f"{server.name}.conf"] = render(
            config, f"CTTA hub cluster server {server.name} (generated by ctta; do not edit)"
        )
    for leaf in topology.leaves:
        config = leaf_server_config(topology, leaf, keys, store_dir(f"leaf-{leaf.centre}"))
        rendered.files[f"leaf-{leaf.centre}.conf"] = render(
            config, f"CTTA leaf server of {leaf.centre} (generated by ctta; do not edit)"
        )
    return rendered
