"""Node create throughput versus a trivial FastAPI endpoint, both behind real uvicorn.

Starts its own nats-server (so the node's outbox relay publishes every create), then for
each SQLite `synchronous` setting asked for: one node on SQLite served by uvicorn in a
separate process, loaded with httpx.AsyncClient at a fixed concurrency from this process.
The same loader then drives a trivial FastAPI app (`POST /noop` -> {"ok": true}) served
the same way, as the ceiling of this loader + uvicorn + FastAPI on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats
from _common import percentile, print_machine, verdict

TOKEN = "bench-staff-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TARGET = 1000
WARMUP = 100
BODY = {
    "title": {"zh": "固态锂电池电解质薄膜", "en": "Solid-state electrolyte film"},
    "summary": {"zh": "硫化物固态电解质连续成膜工艺。", "en": "Continuous coating."},
    "fields": ["energy-storage"],
    "trl": 5,
    "transfer_modes": ["exclusive-licence"],
    "owner_institution": "Shanghai Jiao Tong University",
    "private": {"contact_email": "tto@example.cn", "notes": "floor price 2m CNY"},
}


def serve(args: argparse.Namespace) -> None:
    """Server side, run in a child process: `--serve node|noop`."""
    import uvicorn
    from fastapi import FastAPI

    if args.serve == "noop":
        app = FastAPI()

        @app.post("/noop")
        def noop() -> dict[str, bool]:
            return {"ok": True}

        @app.get("/healthz")
        def healthz() -> dict[str, str]:
            return {"status": "ok"}
    else:
        from pydantic import SecretStr

        from ctta.node.app import create_app
        from ctta.node.settings import NodeSettings
        from ctta.protocol.signing import SigningKey

        key = SigningKey.generate("eastern#bench")
        app = create_app(
            NodeSettings(
                centre="eastern",
                data_dir=Path(args.data_dir),
                nats_url=args.nats_url,
                signing_key_id=key.key_id,
                signing_key_seed=SecretStr(key.seed_b64()),
                staff_tokens=[SecretStr(TOKEN)],
                sqlite_synchronous=args.synchronous[0],
                write_rate_per_second=0,  # the API's own speed, not the limiter's
            )
        )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def start_server(kind: str, port: int, data_dir: Path, nats_url: str, sync: str):
    command = [
        sys.executable,
        __file__,
        "--serve",
        kind,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--nats-url",
        nats_url,
        "--synchronous",
        sync,
    ]
    process = subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {process.returncode}")
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            if r.status_code == 200 and (kind == "noop" or r.json().get("nats") == "connected"):
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"{kind} server not healthy within 30s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def load(
    url: str, path: str, body: dict, headers: dict, n: int, concurrency: int, expect: int
) -> tuple[float, list[float], int]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        for _ in range(WARMUP):  # connections, caches, first-request costs; not counted
            await client.post(path, json=body, headers=headers)
        remaining = n
        latencies: list[float] = []
        errors = 0

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                t = time.perf_counter()
                response = await client.post(path, json=body, headers=headers)
                latencies.append((time.perf_counter() - t) * 1000)
                if response.status_code != expect:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return n / elapsed, latencies, errors


async def raw_load(
    url: str, path: str, body: dict, headers: dict, n: int, concurrency: int, expect: int
) -> tuple[float, list[float], int]:
    """Minimal HTTP/1.1 keep-alive client on asyncio streams: far less client CPU than httpx."""
    import json as _json

    host, port = url.removeprefix("http://").split(":")
    payload = _json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    ).encode()
    request = head + payload

    async def roundtrip(reader, writer) -> int:
        writer.write(request)
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await reader.readexactly(length)
        return int(status_line.split()[1])

    remaining = n
    latencies: list[float] = []
    errors = 0

    async def worker(warmup: int) -> None:
        nonlocal remaining, errors
        reader, writer = await asyncio.open_connection(host, int(port))
        for _ in range(warmup):
            await roundtrip(reader, writer)
        await barrier.wait()
        while remaining > 0:
            remaining -= 1
            t = time.perf_counter()
            if await roundtrip(reader, writer) != expect:
                errors += 1
            latencies.append((time.perf_counter() - t) * 1000)
        writer.close()

    barrier = asyncio.Barrier(concurrency + 1)
    per = -(-WARMUP // concurrency)
    tasks = [asyncio.create_task(worker(per)) for _ in range(concurrency)]
    await barrier.wait()
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return n / elapsed, latencies, errors


async def published(nats_url: str, expected: int, timeout: float = 60) -> tuple[int, float]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    started = time.perf_counter()
    count = 0
    while time.perf_counter() - started < timeout:
        count = (await js.stream_info("CTTA_EVENTS")).state.messages
        if count >= expected:
            break
        await asyncio.sleep(0.1)
    await nc.close()
    return count, time.perf_counter() - started


LOADERS = {"httpx": load, "raw": raw_load}


def main(args: argparse.Namespace) -> int:
    from ctta.deploy.natsserver import NatsServer, free_port
    from ctta.protocol import backbone

    results = []
    with tempfile.TemporaryDirectory(prefix="ctta-bench-writes-") as tmp:
        tmp_path = Path(tmp)
        for sync in args.synchronous:
            server = NatsServer(free_port(), tmp_path / f"nats-{sync}").start()
            try:

                async def provision(url: str = server.url) -> None:
                    nc = await nats.connect(url)
                    await backbone.provision_single_server(nc.jetstream())
                    await nc.close()

                asyncio.run(provision())
                port = free_port()
                print(f"node (SQLite synchronous={sync}) on :{port} ...", flush=True)
                proc = start_server("node", port, tmp_path / f"node-{sync}", server.url, sync)
                try:
                    rate, lat, errors = asyncio.run(
                        LOADERS[args.loader](
                            f"http://127.0.0.1:{port}",
                            "/api/v1/achievements",
                            BODY,
                            AUTH,
                            args.requests,
                            args.concurrency,
                            201,
                        )
                    )
                    print(f"  {rate:,.0f} creates/s, errors {errors}", flush=True)
                    warm = (
                        WARMUP
                        if args.loader == "httpx"
                        else -(-WARMUP // args.concurrency) * args.concurrency
                    )
                    count, waited = asyncio.run(published(server.url, args.requests + warm))
                    print(
                        f"  relay: {count}/{args.requests + WARMUP} events in CTTA_EVENTS "
                        f"({waited:.1f}s after the load ended)",
                        flush=True,
                    )
                finally:
                    stop_server(proc)
                results.append(
                    (
                        f"node creates (sync={sync})",
                        rate,
                        lat,
                        errors,
                        f"{count}/{args.requests + warm} published",
                    )
                )
            finally:
                server.stop()

        port = free_port()
        print(f"trivial FastAPI /noop on :{port} ...", flush=True)
        proc = start_server("noop", port, tmp_path, "", "FULL")
        try:
            rate, lat, errors = asyncio.run(
                LOADERS[args.loader](
                    f"http://127.0.0.1:{port}",
                    "/noop",
                    BODY,
                    {},
                    args.requests,
                    args.concurrency,
                    200,
                )
            )
        finally:
            stop_server(proc)
        results.append(("trivial POST /noop", rate, lat, errors, ""))

    noop = results[-1][1]
    print("\n== result")
    print(
        f"requests {args.requests} per run (+{WARMUP} warm-up not counted), "
        f"concurrency {args.concurrency}, loader {args.loader} in this process, "
        "server in a child process"
    )
    for name, rate, lat, errors, note in results:
        print(
            f"{name:<28}: {rate:7,.0f} req/s  ({rate / noop:4.0%} of noop)  "
            f"p50 {percentile(lat, 50):6.1f} ms  p99 {percentile(lat, 99):6.1f} ms  "
            f"errors {errors}  {note}"
        )
    for name, rate, *_ in results[:-1]:
        print(f"  {name}: target >= {TARGET}/s {verdict(rate >= TARGET)}")
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="requests per run (3000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (32)")
    parser.add_argument(
        "--synchronous",
        nargs="+",
        choices=["FULL", "NORMAL"],
        default=["FULL", "NORMAL"],
        help="SQLite synchronous settings to run, in order (FULL NORMAL)",
    )
    parser.add_argument(
        "--loader",
        choices=["httpx", "raw"],
        default="httpx",
        help="httpx.AsyncClient (default), or a minimal asyncio HTTP/1.1 client "
        "that costs the loader far less CPU (shows the server's own limit)",
    )
    parser.add_argument("--serve", choices=["node", "noop"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--nats-url", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:
        serve(arguments)
        sys.exit(0)
    print_machine("node write throughput benchmark")
    sys.exit(main(arguments))
