"""What `ctta backbone`, `ctta keys` and `ctta deploy` do; `cli.py` only parses.

Imports sit inside the functions, as in `cli.py`: `ctta --help` must not load FastAPI,
the encoder or SQLAlchemy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient


def backbone_init(args: argparse.Namespace) -> None:
    from ctta.protocol import backbone

    seed = _nkey_seed(args.nkey_seed_file)

    async def run() -> dict[str, str]:
        nc = await backbone.connect(
            args.nats_url,
            "ctta-backbone-init",
            nkey_seed=seed,
            inbox_prefix=backbone.PROVISIONING_INBOX,  # leaves may reply only there
        )
        try:
            if args.topology == "single":
                return await backbone.provision_single_server(nc.jetstream())
            if args.topology == "centre":
                if len(args.centre) != 1:
                    sys.exit("--topology centre provisions one leaf: give exactly one --centre")
                return await backbone.provision_centre(nc.jetstream(), args.centre[0])
            centres = args.centre or _registry_centres(args.registry)
            outcome = await backbone.provision_leaf_topology(nc, centres)
            for name in args.integrator:
                outcome |= await _integrator_consumer(nc, name)
            return outcome
        finally:
            await nc.close()

    outcome = asyncio.run(run())
    for name, result in outcome.items():
        print(f"{name}: {result}")
    if any(result.startswith("unreachable") for result in outcome.values()):
        sys.exit("some centres were not provisioned; run again once their leaves are connected")


def _nkey_seed(path: Path | None) -> str | None:
    if path is not None:
        return path.read_text(encoding="utf-8").strip()
    return os.environ.get("CTTA_NATS_NKEY_SEED") or None


def _registry_centres(location: Path) -> list[str]:
    from ctta.protocol.registry import FederationRegistry

    registry = FederationRegistry.load(location) if location.exists() else None
    return [c.id for c in (registry or FederationRegistry.alliance()).centres]


async def _integrator_consumer(nc: NatsClient, name: str) -> dict[str, str]:
    """Pre-create an integrator's durable consumer: its credential may only read it."""
    from ctta.deploy.topology import integrator_durable
    from ctta.protocol import backbone, sdk

    durable = integrator_durable(name)
    config = sdk.consumer_config(durable, sdk.event_filters(), "beginning")
    outcome = await backbone.ensure_consumer(nc.jetstream(), backbone.EVENTS_STREAM, config)
    return {f"{backbone.HUB_DOMAIN}/{backbone.EVENTS_STREAM}/{durable}": outcome}


def keys_init(args: argparse.Namespace) -> None:
    from ctta.deploy.keys import ensure_keys, ensure_nkeys
    from ctta.deploy.manifests import write_secrets
    from ctta.deploy.natsserver import free_ports
    from ctta.deploy.topology import ServerKeys, Topology, backbone_users, render_all
    from ctta.protocol.registry import FederationRegistry

    directory: Path = args.dir
    directory.mkdir(parents=True, exist_ok=True)
    registry_file = directory / "federation.json"
    registry = (
        FederationRegistry.load(registry_file)
        if registry_file.exists()
        else FederationRegistry.alliance()
    )
    centres = args.centre or [c.id for c in registry.centres]
    signing = ensure_keys(registry, directory / "signing-seeds.json", centres)
    registry.save(registry_file)
    topology = (
        Topology.loopback(
            centres, iter(free_ports(Topology.loopback_ports(len(centres)))), args.integrator
        )
        if args.layout == "loopback"
        else Topology.containers(centres, args.integrator)
    )
    users = ensure_nkeys(directory / "nkeys.json", backbone_users(topology))
    stores = directory / "jetstream" if args.layout == "loopback" else Path("/data/jetstream")
    configs = render_all(
        topology, ServerKeys.from_users(users, topology), lambda n: str(stores / n)
    )
    for path in configs.write(directory / "nats"):
        print(path)
    for path in write_secrets(directory / "env", topology, users, signing):
        print(path)
    print(registry_file)


def deploy_render(args: argparse.Namespace) -> None:
    from ctta.deploy.manifests import render_manifests

    for path in render_manifests(args.output, args.centre or None):
        print(path)


def keys_generate(args: argparse.Namespace) -> None:
    from ctta.deploy.keys import new_key
    from ctta.protocol.registry import FederationRegistry

    key = new_key(args.centre)
    if args.registry:
        registry = (
            FederationRegistry.load(args.registry)
            if args.registry.exists()
            else FederationRegistry.alliance()
        )
        entry = registry.centre(args.centre)
        if entry is None:
            sys.exit(f"centre {args.centre!r} is not in {args.registry}")
        entry.keys[key.key_id] = key.public_key_b64()
        registry.save(args.registry)
        print(f"# public key added to {args.registry}", file=sys.stderr)
    print(f"CTTA_SIGNING_KEY_ID={key.key_id}")
    print(f"CTTA_SIGNING_KEY_SEED={key.seed_b64()}")
