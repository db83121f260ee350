"""Hub ingest rate versus the raw nats-py pull+ack rate on the same stream.

Starts its own nats-server (free port, temp dir), provisions the streams, pre-publishes N
signed achievement events of the eleven centres into CTTA_EVENTS, then measures
(a) a bare durable pull consumer that fetches batches of 256 and acks each message, and
(b) the hub's Indexer (SQLite) on a fresh durable consumer until all N are indexed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nats
import nats.errors
import ulid
from _common import print_machine, signed_upsert, verdict

from ctta.deploy.natsserver import NatsServer, free_port
from ctta.hub.app import MIGRATIONS
from ctta.hub.index.ingest import Indexer
from ctta.protocol import backbone
from ctta.protocol.records import PublishedAchievement
from ctta.protocol.registry import FederationRegistry
from ctta.protocol.signing import SigningKey
from ctta.protocol.taxonomy import CENTRES
from ctta.server.db import create_db_engine, migrate

TARGET_RATIO = 0.3
FIELDS = ["energy-storage", "environment", "new-energy-vehicles", "advanced-manufacturing"]


def make_events(n: int, keys: dict[str, SigningKey]) -> list:
    now = datetime.now(UTC)
    events = []
    for i in range(n):
        centre = CENTRES[i % len(CENTRES)].id
        record_id = str(ulid.ULID())
        record = PublishedAchievement(
            id=record_id,
            centre=centre,
            version=1,
            created_at=now,
            updated_at=now,
            title={"zh": f"锂电池回收再利用技术 {i}", "en": f"Lithium battery recycling {i}"},
            summary={
                "zh": "湿法冶金回收锂、钴、镍。",
                "en": "Hydrometallurgical recovery of lithium, cobalt and nickel.",
            },
            keywords=["锂电池", "recycling", f"kw{i % 97}"],
            fields=[FIELDS[i % len(FIELDS)]],
            ipc=["H01M 10/54"],
            trl=1 + i % 9,
            transfer_modes=["exclusive-licence"],
            owner_institution="Tsinghua University",
        )
        events.append(signed_upsert(record, keys[centre]))
    return events


async def publish_all(js, events: list, chunk: int = 500) -> None:
    for start in range(0, len(events), chunk):
        part = events[start : start + chunk]
        await asyncio.gather(
            *(js.publish(e.subject, e.body, headers=e.headers, timeout=30) for e in part)
        )
        print(f"  published {start + len(part)}/{len(events)}", end="\r", flush=True)
    print()


async def raw_pull_ack(js, n: int, timeout: float) -> float:
    await backbone.ensure_consumer(
        js, backbone.EVENTS_STREAM, backbone.indexer_consumer_config("bench-raw")
    )
    sub = await js.pull_subscribe_bind("bench-raw", stream=backbone.EVENTS_STREAM)
    received = 0
    started = time.perf_counter()
    deadline = started + timeout
    while received < n and time.perf_counter() < deadline:
        try:
            batch = await sub.fetch(256, timeout=1.0)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        for msg in batch:
            await msg.ack()
        received += len(batch)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    if received < n:
        raise RuntimeError(f"raw consumer got only {received}/{n} within {timeout}s")
    return n / elapsed


async def hub_ingest(js, registry, db_path: Path, synchronous: str, n: int, timeout: float):
    engine = create_db_engine(f"sqlite:///{db_path}", sqlite_synchronous=synchronous)
    await asyncio.to_thread(migrate, engine, MIGRATIONS)
    indexer = Indexer(engine, registry, consumer="bench-indexer", batch_size=256)
    started = time.perf_counter()
    task = asyncio.create_task(indexer.run(js))
    deadline = started + timeout
    last_print = started
    try:
        while indexer.state.indexed < n:
            if indexer.state.dead_letters:
                raise RuntimeError(
                    f"{indexer.state.dead_letters} dead letters; last error "
                    f"{indexer.state.last_error}"
                )
            now = time.perf_counter()
            if now > deadline:
                raise RuntimeError(f"only {indexer.state.indexed}/{n} indexed within {timeout}s")
            if now - last_print > 2:
                print(f"  indexed {indexer.state.indexed}/{n}", flush=True)
                last_print = now
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        engine.dispose()
    return n / elapsed, elapsed


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="ctta-bench-ingest-") as tmp:
        tmp_path = Path(tmp)
        server = NatsServer(free_port(), tmp_path / "nats").start()
        try:
            keys = {c.id: SigningKey.generate(f"{c.id}#bench") for c in CENTRES}
            registry = FederationRegistry.alliance()
            for centre, key in keys.items():
                registry.centre(centre).keys[key.key_id] = key.public_key_b64()
            registry.save(tmp_path / "federation.json")
            registry = FederationRegistry.load(tmp_path / "federation.json")

            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await backbone.provision_single_server(js)
            print(f"building and signing {args.events} events ...", flush=True)
            t = time.perf_counter()
            events = make_events(args.events, keys)
            print(f"  built in {time.perf_counter() - t:.1f}s; publishing ...", flush=True)
            t = time.perf_counter()
            await publish_all(js, events)
            info = await js.stream_info(backbone.EVENTS_STREAM)
            print(
                f"  stream holds {info.state.messages} messages "
                f"(published in {time.perf_counter() - t:.1f}s)",
                flush=True,
            )
            assert info.state.messages == args.events, info.state.messages

            print("(a) raw nats-py pull (batch 256) + ack each ...", flush=True)
            raw_rate = await raw_pull_ack(js, args.events, args.timeout)
            print(f"  raw pull+ack: {raw_rate:,.0f} events/s", flush=True)

            print(f"(b) hub Indexer, SQLite synchronous={args.synchronous} ...", flush=True)
            hub_rate, elapsed = await hub_ingest(
                js, registry, tmp_path / "hub.db", args.synchronous, args.events, args.timeout
            )
            print(f"  hub ingest: {hub_rate:,.0f} events/s ({elapsed:.1f}s for {args.events})")
            await nc.close()
        finally:
            server.stop()

    ratio = hub_rate / raw_rate
    print("\n== result")
    print(f"events                  : {args.events} (11 centres, signed, achievement upserts)")
    print(f"raw nats-py pull+ack    : {raw_rate:,.0f} events/s")
    print(f"hub ingest (searchable) : {hub_rate:,.0f} events/s  (synchronous={args.synchronous})")
    print(
        f"ratio hub/raw           : {ratio:.2f}  target >= {TARGET_RATIO}  "
        f"{verdict(ratio >= TARGET_RATIO)}"
    )
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000, help="events to publish (20000)")
    parser.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="SQLite synchronous pragma of the hub database (FULL)",
    )
    parser.add_argument("--timeout", type=float, default=300, help="give up after (s)")
    parser.add_argument(
        "--profile", metavar="FILE", help="write a cProfile of the whole run to FILE"
    )
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    print_machine("hub ingest benchmark")
    if arguments.profile:
        import cProfile

        with cProfile.Profile() as profile:
            code = asyncio.run(main(arguments))
        profile.dump_stats(arguments.profile)
        print(f"profile written to {arguments.profile}")
        sys.exit(code)
    sys.exit(asyncio.run(main(arguments)))
