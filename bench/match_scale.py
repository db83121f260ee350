"""Matching at federation scale: routing and preview latency with N achievements indexed.

Issue targets, at 100,000 achievements: demand published → proposals stored in both
centres' inboxes p50 ≤ 300 ms and p99 ≤ 1 s; preview p95 ≤ 50 ms.

The N achievements are signed as the eleven centres and published straight onto the
backbone (creating them through the node API would take hours and is measured by
`node_writes.py`); the hub ingests, indexes and embeds them as it would any event. Their
text is made from the CSL abstracts (dev + test): each achievement joins sentences of two
different abstracts, so the vocabulary and the embedding space are real Chinese
scientific text, not random tokens. Only when the hub has embedded all of them (the
matcher idle) are demands created through a node's REST API and previews sent, one at a
time, so the figures are steady-state latencies, not queueing behind the initial load.

`--filler-vectors random` skips the hour the hub needs to embed 100,000 abstracts on one
core: a first hub (matcher off) indexes the fillers, the script stores a random unit
vector per filler as that record's vector, and the measured hub starts on that database,
loading them as it would after a restart. Exact dense search costs the same whatever the
vectors hold, and every demand of the measurement is embedded by the real encoder; only
which fillers rank where differs (quality is `match_eval.py`'s business).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import ulid
from _common import percentile, print_machine, signed_upsert, verdict
from match_eval import demand, load_csl, routing_latency

from ctta.deploy.local import LocalFederation
from ctta.deploy.natsserver import NatsServer, free_port
from ctta.hub.matching import service
from ctta.hub.matching.engine import RecordKey
from ctta.protocol import backbone
from ctta.protocol.records import PublishedAchievement
from ctta.protocol.signing import SigningKey
from ctta.protocol.taxonomy import CENTRES, TechnologyField
from ctta.server.db import create_db_engine, session_scope

MODEL = "use-multilingual-v3"  # the matcher's model name for stored vectors

TOKEN = "bench-staff-token-0123456789"
FIELDS = list(TechnologyField)
SENTENCE = re.compile(r"[^。！？；]+[。！？；]?")


def filler_events(n: int, keys: dict[str, SigningKey], papers: list[dict[str, str]]) -> list:
    sentences = [SENTENCE.findall(p["abstract"]) or [p["abstract"]] for p in papers]
    now, events = datetime.now(UTC), []
    for i in range(n):
        first, second = sentences[i % len(papers)], sentences[(i * 7919 + 13) % len(papers)]
        title = first[(i // len(papers)) % len(first)][:200]
        summary = "".join(first[:2] + second[-2:])[:2000]
        centre, record_id = CENTRES[i % len(CENTRES)].id, str(ulid.ULID())
        record = PublishedAchievement(
            id=record_id,
            centre=centre,
            version=1,
            created_at=now,
            updated_at=now,
            title={"zh": title},
            summary={"zh": summary},
            fields=[FIELDS[i % len(FIELDS)]],
            trl=1 + i % 9,
            transfer_modes=["technical-service"],
            owner_institution="CSL benchmark",
        )
        events.append(signed_upsert(record, keys[centre]))
    return events


async def publish(url: str, events: list) -> None:
    nc = await backbone.connect(url, "bench-filler")
    js = nc.jetstream()
    for start in range(0, len(events), 1000):
        part = events[start : start + 1000]
        await asyncio.gather(
            *(js.publish(e.subject, e.body, headers=e.headers, timeout=60) for e in part)
        )
        print(f"  published {start + len(part)}/{len(events)}", end="\r", flush=True)
    print()
    await nc.close()


async def wait_embedded(federation: LocalFederation, n: int) -> float:
    t0 = time.monotonic()
    ingest, matcher = federation.hub_app.state.ingest, federation.hub_app.state.matcher.state
    while ingest.indexed < n or matcher.embedded < n or matcher.pending:
        print(
            f"  indexed {ingest.indexed}/{n}, embedded {matcher.embedded}/{n} "
            f"({time.monotonic() - t0:.0f} s)",
            end="\r",
            flush=True,
        )
        await asyncio.sleep(2)
    print()
    return time.monotonic() - t0


async def preview_latency(federation: LocalFederation, papers: list[dict[str, str]], count: int):
    samples = []
    for i in range(count):
        paper = papers[(i * 53) % len(papers)]
        body = {"kind": "demand", "demand": demand(paper["title"]), "limit": 10}
        t0 = time.perf_counter()
        response = await federation.hub.post(
            "/api/v1/matches/preview", json=body, headers=federation.auth
        )
        samples.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
    p95 = percentile(samples, 95)
    print(
        f"preview, {count} demands: p50 {percentile(samples, 50):.1f} ms  p95 {p95:.1f} ms "
        f"(target p95 ≤ 50 ms) {verdict(p95 <= 50)}"
    )


async def index_with_random_vectors(url: str, base: Path, keys: dict, events: list) -> None:
    """Index the fillers with a matcher-less hub, then store a random vector for each."""
    async with LocalFederation.start(
        url, base, token=TOKEN, keys=keys, hub_settings={"matching": False}
    ) as indexing:
        await publish(url, events)
        while indexing.hub_app.state.ingest.indexed < len(events):
            await asyncio.sleep(1)
    engine = create_db_engine(f"sqlite:///{base / 'hub.db'}")
    rng = np.random.default_rng(7)
    with session_scope(engine, write=True) as session:
        for event in events:
            centre, kind, record_id = event.subject.split(".")[3:]
            vector = rng.normal(size=512).astype(np.float32)
            key = RecordKey(centre, kind, record_id)
            service.save_vector(session, key, 1, MODEL, vector / np.linalg.norm(vector))
    engine.dispose()


async def run(args: argparse.Namespace) -> None:
    papers = load_csl("dev") + load_csl("test")
    centres = [c.id for c in CENTRES]
    keys = {c: SigningKey.generate(f"{c}#bench") for c in centres}
    with tempfile.TemporaryDirectory(prefix="ctta-scale-") as tmp:
        base = Path(tmp)
        server = NatsServer(free_port(), base / "nats").start()
        try:
            t0 = time.monotonic()
            events = filler_events(args.achievements, keys, papers)
            print(f"signed {len(events)} achievements in {time.monotonic() - t0:.0f} s")
            if args.filler_vectors == "random":
                await index_with_random_vectors(server.url, base, keys, events)
            async with LocalFederation.start(
                server.url,
                base,
                token=TOKEN,
                keys=keys,
                hub_settings={
                    "sqlite_synchronous": "NORMAL",
                    "match_ann_threshold": args.ann_threshold,
                },
            ) as federation:
                if args.filler_vectors == "encoder":
                    await publish(server.url, events)
                matcher = federation.hub_app.state.matcher
                if args.filler_vectors == "encoder":
                    took = await wait_embedded(federation, args.achievements)
                    rate = args.achievements / took
                    done = f"{args.achievements} in {took:.0f} s ({rate:.0f}/s)"
                    print(f"hub indexed and embedded {done}")
                else:
                    print(f"hub loaded {len(matcher.engine)} records with stored vectors")
                approximate = matcher.engine.dense.approximate
                print(f"dense search: {'HNSW' if approximate else 'exact'}")
                await preview_latency(federation, papers, args.previews)
                await routing_latency(federation, papers, args.demands, args.achievements)
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"peak RSS of the bench process (hub + 11 nodes): {rss:.0f} MiB")
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--achievements", type=int, default=100_000, help="(100,000)")
    parser.add_argument("--previews", type=int, default=200, help="(200)")
    parser.add_argument("--demands", type=int, default=50, help="routing samples (50)")
    parser.add_argument(
        "--ann-threshold",
        type=int,
        default=200_000,
        help="the hub's CTTA_MATCH_ANN_THRESHOLD (200,000: exact search at 100,000)",
    )
    parser.add_argument(
        "--filler-vectors",
        choices=["encoder", "random"],
        default="encoder",
        help="encoder: the hub embeds every filler (about an hour at 100,000); "
        "random: stored random unit vectors (see above)",
    )
    arguments = parser.parse_args()
    print_machine(f"matching at scale: {arguments.achievements} achievements")
    sys.exit(asyncio.run(run(arguments)))
