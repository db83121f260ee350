"""cProfile of the hub's apply_batch on 1,024 signed events, called in the main thread.

(cProfile in `ingest.py --profile` cannot see apply_batch, which runs in a worker thread.)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import ingest
import nats
from _common import print_machine

from ctta.deploy.natsserver import NatsServer, free_port
from ctta.hub.app import MIGRATIONS
from ctta.hub.index.ingest import apply_batch
from ctta.protocol import backbone
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.signing import SigningKey
from ctta.protocol.taxonomy import CENTRES
from ctta.server.db import create_db_engine, migrate


async def main(events: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ctta-bench-prof-"))
    server = NatsServer(free_port(), tmp / "nats").start()
    try:
        keys = {c.id: SigningKey.generate(f"{c.id}#bench") for c in CENTRES}
        registry = FederationRegistry.alliance()
        for centre, key in keys.items():
            registry.centre(centre).keys[key.key_id] = key.public_key_b64()
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await backbone.provision_single_server(js)
        await ingest.publish_all(js, ingest.make_events(events, keys))
        sub = await js.pull_subscribe_bind(backbone.HUB_INDEXER, stream=backbone.EVENTS_STREAM)
        messages = []
        while len(messages) < events:
            messages += await sub.fetch(256, timeout=2)
        engine = create_db_engine(f"sqlite:///{tmp}/hub.db")
        migrate(engine, MIGRATIONS)
        started = time.perf_counter()
        for i in range(0, events, 256):
            apply_batch(engine, registry, messages[i : i + 256])
        plain_rate = events / (time.perf_counter() - started)
        print(f"apply_batch: {plain_rate:.0f} events/s (no profiler, first pass: inserts)")
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        for i in range(0, events, 256):
            apply_batch(engine, registry, messages[i : i + 256])
        profile.disable()
        rate = events / (time.perf_counter() - started)
        print(f"apply_batch: {rate:.0f} events/s (under cProfile)")
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        pstats.Stats(profile).sort_stats("cumulative").print_stats("hub/index|protocol|flush", 20)
        await nc.close()
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1024)
    arguments = parser.parse_args()
    print_machine("profile of the hub's apply_batch")
    asyncio.run(main(arguments.events))
