"""Write-to-searchable freshness across the federation, all parts in this one process.

Starts its own nats-server, provisions it, runs the hub and the eleven nodes in-process
(httpx.ASGITransport + each app's lifespan), then issues creates at a fixed total rate
spread over the nodes (open loop). For each write it records when the create returned 201
and polls the hub search for a unique token of its title until it is found; it reports
p50/p95/p99 of (found - acknowledged).

Caveat printed with the result: load generator, eleven nodes, the hub, the pollers and
their thread pools share one Python process (one GIL) on this machine, so the figure is an
upper bound of what separate processes would show; the poll interval bounds the resolution.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import percentile, print_machine, verdict

from ctta.deploy.local import LocalFederation
from ctta.deploy.natsserver import NatsServer, free_port

TOKEN = "bench-staff-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TARGET_P50_MS = 50
TARGET_P99_MS = 250


def body(token: str, i: int) -> dict:
    return {
        "title": {"zh": f"固态锂电池电解质薄膜 {i}", "en": f"Solid-state electrolyte {token}"},
        "summary": {"zh": "硫化物固态电解质连续成膜工艺。", "en": "Continuous coating."},
        "fields": ["energy-storage"],
        "trl": 5,
        "transfer_modes": ["exclusive-licence"],
        "owner_institution": "Shanghai Jiao Tong University",
        "private": {"contact_email": "tto@example.cn", "notes": "floor price"},
    }


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="ctta-bench-fresh-") as tmp:
        tmp_path = Path(tmp)
        server = NatsServer(free_port(), tmp_path / "nats").start()
        try:
            return await _run(args, tmp_path, server)
        finally:
            server.stop()


async def _run(args: argparse.Namespace, tmp_path: Path, server: NatsServer) -> int:
    async with LocalFederation.start(
        server.url,
        tmp_path,
        token=TOKEN,
        node_settings={"sqlite_synchronous": args.synchronous},
        hub_settings={"sqlite_synchronous": args.synchronous, "matching": not args.no_matching},
    ) as federation:
        nodes, hub = federation.nodes, federation.hub
        centres = list(nodes)

        latencies: list[float] = []
        failures: list[str] = []
        write_ms: list[float] = []
        polls = 0
        poll_slots = asyncio.Semaphore(args.max_pollers)
        write_slots = asyncio.Semaphore(args.max_in_flight)

        async def one(i: int) -> None:
            nonlocal polls
            async with write_slots:
                token = f"fr{uuid.uuid4().hex[:16]}"
                client = nodes[centres[i % len(centres)]]
                sent = time.perf_counter()
                response = await client.post(
                    "/api/v1/achievements", json=body(token, i), headers=AUTH
                )
                acked = time.perf_counter()
                write_ms.append((acked - sent) * 1000)
                if response.status_code != 201:
                    failures.append(f"create {response.status_code}: {response.text[:200]}")
                    return
            give_up = acked + args.poll_timeout
            async with poll_slots:
                while True:
                    found = await hub.get("/api/v1/search", params={"q": token, "limit": 1})
                    now = time.perf_counter()
                    polls += 1
                    if found.status_code == 200 and found.json()["total"] >= 1:
                        latencies.append((now - acked) * 1000)
                        return
                    if now > give_up:
                        failures.append(f"{token} not found within {args.poll_timeout}s")
                        return
                    await asyncio.sleep(args.poll_interval)

        total = int(args.rate * args.duration)
        print(
            f"issuing {total} creates at {args.rate}/s over {len(centres)} nodes "
            f"for {args.duration}s ...",
            flush=True,
        )
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        tasks = []
        for i in range(total):
            due = started + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
            if i and i % int(args.rate) == 0:
                print(
                    f"  t={time.perf_counter() - started:5.1f}s issued {i}, "
                    f"acked {len(write_ms)}, found {len(latencies)}",
                    flush=True,
                )
        issued_in = time.perf_counter() - started
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)

    acked_rate = len(write_ms) / elapsed
    print("\n== result")
    print(
        f"writes issued            : {total} in {issued_in:.1f}s "
        f"(target rate {args.rate}/s; offered {total / issued_in:.0f}/s)"
    )
    print(f"writes acknowledged      : {len(write_ms)} ({acked_rate:.0f}/s over {elapsed:.1f}s)")
    print(
        f"create latency ms        : p50 {percentile(write_ms, 50):.1f}  "
        f"p95 {percentile(write_ms, 95):.1f}  p99 {percentile(write_ms, 99):.1f}"
    )
    print(f"found at hub             : {len(latencies)}; failures {len(failures)}")
    for failure in failures[:5]:
        print(f"  {failure}")
    p50, p95, p99 = (percentile(latencies, p) for p in (50, 95, 99))
    print(
        f"freshness ms (found-ack) : p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  "
        f"max {max(latencies, default=float('nan')):.1f}"
    )
    print(
        f"  target p50 <= {TARGET_P50_MS} ms {verdict(p50 <= TARGET_P50_MS)}; "
        f"p99 <= {TARGET_P99_MS} ms {verdict(p99 <= TARGET_P99_MS)}"
    )
    print(
        f"search polls             : {polls} (interval {args.poll_interval * 1000:.0f} ms, "
        f"<= {args.max_pollers} concurrent pollers)"
    )
    print(
        f"process CPU              : {cpu_s:.1f}s over {elapsed:.1f}s wall = "
        f"{cpu_s / elapsed:.2f} cores (nats-server runs in its own process)"
    )
    print(
        "caveat: load generator, 11 nodes, hub, pollers share ONE Python process/GIL; a "
        "process CPU near 1.0 core means the figure is limited by this setup, not only the "
        "product; resolution is bounded by the poll interval."
    )
    return 0 if not failures else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200, help="total creates per second (200)")
    parser.add_argument("--duration", type=float, default=15, help="seconds of writing (15)")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.01,
        help="seconds between searches of one write (0.01)",
    )
    parser.add_argument("--poll-timeout", type=float, default=30, help="give up per write (30)")
    parser.add_argument(
        "--max-pollers", type=int, default=64, help="writes polled concurrently (64)"
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=256, help="creates in flight at once (256)"
    )
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument(
        "--no-matching", action="store_true", help="run the hub without its matcher"
    )
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the run to FILE")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    print_machine("write-to-searchable freshness benchmark")
    if arguments.profile:
        import cProfile

        with cProfile.Profile() as profile:
            code = asyncio.run(run(arguments))
        profile.dump_stats(arguments.profile)
        print(f"profile written to {arguments.profile}")
        sys.exit(code)
    sys.exit(asyncio.run(run(arguments)))
