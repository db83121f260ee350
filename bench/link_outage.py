"""Faults on the production topology: a centre's link cut under load, a hub server killed.

Starts the loopback topology of `ctta.deploy.cluster` (three hub servers, a leaf per
centre with real NKeys), three nodes on their leaves and the hub on the cluster, all in
this process. Then:

1. link cut: eastern's link to the hub is cut while the three nodes write at a steady
   rate; after `--outage` seconds it is restored. Reported: writes accepted during the
   outage (all must be), and the time from the link's return until the hub index equals
   the union of the node manifests again;
2. hub server killed: `hub-2` is killed during the same kind of load. Reported: writes
   accepted while it was down, and time until the index equals the manifests.
No event may be lost or stored twice; the script checks both and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from _common import print_machine, verdict
from pydantic import SecretStr
from sqlmodel import Session

from ctta.deploy.cluster import leaf_backbone
from ctta.deploy.local import serving
from ctta.hub.app import create_app as create_hub
from ctta.hub.index import service as index
from ctta.hub.settings import HubSettings
from ctta.node.app import create_app as create_node
from ctta.node.settings import NodeSettings
from ctta.protocol import backbone
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.signing import SigningKey

CENTRES = ["eastern", "southern", "ocean"]
TOKEN = "bench-staff-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def offer(n: int) -> dict:
    return {
        "title": {"en": f"Offer {n}", "zh": f"成果 {n}"},
        "summary": {"en": "A benchmark record."},
        "trl": 5,
        "transfer_modes": ["technical-service"],
        "owner_institution": "Benchmark",
    }


async def write(nodes, rate: float, seconds: float, accepted: list[str]) -> None:
    """Write at `rate` per second across the nodes for `seconds`."""
    start, n = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        centre = CENTRES[n % len(CENTRES)]
        response = await nodes[centre].post("/api/v1/achievements", json=offer(n), headers=AUTH)
        if response.status_code != 201:
            raise SystemExit(f"write refused: {response.status_code} {response.text}")
        accepted.append(response.json()["id"])
        n += 1
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))


async def indexed(hub_app, ids: set[str]) -> float:
    """Seconds until every id is in the hub index."""
    t0 = time.monotonic()
    while True:
        with Session(hub_app.state.engine) as session:
            present = {e[1] for c in CENTRES for e in index.live_entries(session, c)}
        if ids <= present:
            return time.monotonic() - t0
        await asyncio.sleep(0.05)


async def converge(hub_app, nodes) -> float:
    t0 = time.monotonic()
    while True:
        union = set()
        for centre, node in nodes.items():
            manifest = await node.get("/api/v1/federation/manifest", params={"include": "records"})
            union |= {
                (centre, r["kind"], r["id"], r["version"]) for r in manifest.json()["records"]
            }
        with Session(hub_app.state.engine) as session:
            indexed = {(c, *e) for c in nodes for e in index.live_entries(session, c)}
        if indexed == union:
            return time.monotonic() - t0
        await asyncio.sleep(0.1)


async def run(args: argparse.Namespace) -> None:
    keys = {c: SigningKey.generate(f"{c}#bench") for c in CENTRES}
    with tempfile.TemporaryDirectory(prefix="ctta-outage-") as tmp:
        base = Path(tmp)
        registry = FederationRegistry.alliance()
        for centre, key in keys.items():
            entry = registry.centre(centre)
            assert entry is not None
            entry.keys[key.key_id] = key.public_key_b64()
        registry.save(base / "federation.json")
        async with (
            leaf_backbone(base / "backbone", CENTRES, linked=("eastern",)) as leaves,
            contextlib.AsyncExitStack() as stack,
        ):
            nodes = {}
            for centre, key in keys.items():
                settings = NodeSettings(
                    centre=centre,
                    database_url=f"sqlite:///{base / f'{centre}.db'}",
                    nats_url=leaves.leaf_url(centre),
                    signing_key_id=key.key_id,
                    signing_key_seed=SecretStr(key.seed_b64()),
                    staff_tokens=[SecretStr(TOKEN)],
                    write_rate_per_second=0,
                )
                nodes[centre] = await stack.enter_async_context(serving(create_node(settings)))
            hub_app = create_hub(
                HubSettings(
                    database_url=f"sqlite:///{base / 'hub.db'}",
                    nats_url=leaves.hub_url,
                    nats_nkey_seed=SecretStr(leaves.hub_seed),
                    registry_file=base / "federation.json",
                    matching=False,
                )
            )
            await stack.enter_async_context(serving(hub_app))
            link = leaves.links["eastern"]

            accepted: list[str] = []
            load = asyncio.create_task(write(nodes, args.rate, args.outage + 4, accepted))
            await asyncio.sleep(2)
            await link.cut()
            first = len(accepted)
            await asyncio.sleep(args.outage)
            written_during = set(accepted[first:])
            await link.restore()
            catch_up = await indexed(hub_app, written_during)
            await load
            settle = await converge(hub_app, nodes)
            print(
                f"link cut {args.outage:.0f} s at {args.rate:.0f} writes/s: "
                f"{len(written_during)} writes accepted during the outage; all of them indexed "
                f"{catch_up:.1f} s after the link returned; {len(accepted)} writes in all, index "
                f"equal to the manifests {settle:.1f} s after the load ended"
            )

            before = len(accepted)
            load = asyncio.create_task(write(nodes, args.rate, 10, accepted))
            await asyncio.sleep(2)
            leaves.hub_server("hub-2").kill()
            await load
            settle = await converge(hub_app, nodes)
            print(
                f"hub-2 killed under {args.rate:.0f} writes/s: {len(accepted) - before} writes "
                f"accepted; index equal to the manifests {settle:.1f} s after the load ended"
            )
            nc = await leaves.connect_hub()
            stored = (await nc.jetstream().stream_info(backbone.EVENTS_STREAM)).state.messages
            await nc.close()
            lost_or_doubled = stored != len(accepted)
            print(
                f"hub stream holds {stored} events for {len(accepted)} accepted writes: "
                f"{verdict(not lost_or_doubled)}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=30.0, help="writes per second (30)")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the link is cut (30)")
    arguments = parser.parse_args()
    print_machine("faults on the leaf topology")
    asyncio.run(run(arguments))
