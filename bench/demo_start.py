"""Time `ctta demo` from launch to a fully served, fully indexed federation.

Runs `.venv/bin/ctta demo` in a fresh temp data dir (cold: sample records are loaded
through the node APIs and must reach the hub index), then again on the same dir (warm).
Ready = hub /healthz and all eleven node /healthz answer 200 and the hub search total
equals the number of published sample records. Each run is stopped with SIGINT and must
exit within 10 s.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import httpx
from _common import print_machine, verdict

from ctta.protocol.taxonomy import CENTRES

TOKEN = "bench-demo-token-0123456789"
TARGET_COLD_S = 15
EXIT_LIMIT_S = 10
CTTA = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "ctta"


def expected_published() -> tuple[int, list[str]]:
    """Published (non-private) sample records, and the centres whose sample file is missing."""
    total, missing = 0, []
    folder = resources.files("ctta.deploy") / "sample"
    for centre in CENTRES:
        path = folder / f"{centre.id}.json"
        if not path.is_file():
            missing.append(centre.id)
            continue
        for item in json.loads(path.read_text(encoding="utf-8"))["records"]:
            if item["content"].get("visibility", "public") != "private":
                total += 1
    return total, missing


def free_block(size: int) -> int:
    """A hub port whose next `size` ports are free too (the demo takes hub_port+1..+11).

    Chosen below the kernel's ephemeral range (32768+), where outgoing connections of the
    demo itself (NATS clients, the sample loader) could take a port before uvicorn binds it.
    """
    import random
    import socket

    for _ in range(200):
        base = random.randrange(20000, 32000 - size)
        try:
            for port in range(base, base + size + 1):
                with socket.socket() as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports")


def one_run(label: str, data_dir: Path, expected: int, timeout: float) -> dict:
    hub_port = free_block(len(CENTRES) + 1)
    nats_port = hub_port + len(CENTRES) + 1  # checked free by free_block (size + 1 ports)
    command = [
        str(CTTA),
        "--log-level",
        "WARNING",
        "demo",
        "--data-dir",
        str(data_dir),
        "--hub-port",
        str(hub_port),
        "--nats-port",
        str(nats_port),
        "--token",
        TOKEN,
    ]
    print(f"[{label}] {' '.join(command)}", flush=True)
    log = open(data_dir.parent / f"{label}.log", "wb")  # noqa: SIM115
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    urls = [f"http://127.0.0.1:{hub_port + i}" for i in range(len(CENTRES) + 1)]
    result: dict = {"label": label, "ready_s": None, "exit_s": None, "error": None}
    healthy_at = None
    last_total = None
    try:
        with httpx.Client(timeout=2) as client:
            while time.perf_counter() - started < timeout:
                if process.poll() is not None:
                    result["error"] = f"ctta demo exited early with {process.returncode}"
                    break
                try:
                    if healthy_at is None and all(
                        client.get(f"{u}/healthz").status_code == 200 for u in urls
                    ):
                        healthy_at = time.perf_counter() - started
                        print(f"  all 12 /healthz 200 at {healthy_at:.1f}s", flush=True)
                    if healthy_at is not None:
                        r = client.get(
                            f"{urls[0]}/api/v1/search",
                            params={"limit": 1},
                            headers={"Authorization": f"Bearer {TOKEN}"},
                        )
                        if r.status_code == 200:
                            total = r.json()["total"]
                            if total != last_total:
                                print(
                                    f"  hub search total {total}/{expected} at "
                                    f"{time.perf_counter() - started:.1f}s",
                                    flush=True,
                                )
                                last_total = total
                            if total == expected:
                                result["ready_s"] = time.perf_counter() - started
                                break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            else:
                result["error"] = (
                    f"not ready within {timeout}s (healthy at {healthy_at}, "
                    f"search total {last_total}/{expected})"
                )
    finally:
        result["healthy_s"] = healthy_at
        result["last_total"] = last_total
        if process.poll() is None:
            stop = time.perf_counter()
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=EXIT_LIMIT_S)
                result["exit_s"] = time.perf_counter() - stop
            except subprocess.TimeoutExpired:
                result["exit_s"] = None
                result["error"] = (result["error"] or "") + " did not exit within 10s of SIGINT"
                process.kill()
                process.wait()
            result["returncode"] = process.returncode
        log.close()
    tail = (data_dir.parent / f"{label}.log").read_text(errors="replace").strip().splitlines()
    if result["error"]:
        print("  " + "\n  ".join(tail[-15:]))
    return result


def main(args: argparse.Namespace) -> int:
    if not CTTA.exists():
        print(f"{CTTA} not found")
        return 2
    expected, missing = expected_published()
    print(
        f"sample records to publish: {expected}; centres without a sample file: "
        f"{missing or 'none'}",
        flush=True,
    )
    if missing:
        print(
            f"NOTE: deploy/sample/ lacks {len(missing)} of {len(CENTRES)} centre files; "
            "`ctta demo` is expected to fail loading samples - running anyway to report it."
        )
    results = []
    with tempfile.TemporaryDirectory(prefix="ctta-bench-demo-") as tmp:
        data_dir = Path(tmp) / "demo"
        for label in ("cold", "warm"):
            res = one_run(label, data_dir, expected, args.timeout)
            results.append(res)
            if res["error"] and label == "cold":
                print("  cold start failed; skipping the warm start")
                break

    print("\n== result")
    for res in results:
        ready = f"{res['ready_s']:.1f}s" if res["ready_s"] is not None else "not ready"
        healthy = f"{res['healthy_s']:.1f}s" if res.get("healthy_s") is not None else "never"
        exit_s = f"{res['exit_s']:.1f}s" if res["exit_s"] is not None else "n/a"
        print(
            f"{res['label']:<5}: ready {ready} (all /healthz 200 at {healthy}); "
            f"SIGINT exit in {exit_s} rc={res.get('returncode')}"
            + (f"; ERROR: {res['error']}" if res["error"] else "")
        )
    cold = results[0]
    ok = cold["ready_s"] is not None and cold["ready_s"] <= TARGET_COLD_S
    print(f"target cold <= {TARGET_COLD_S}s: {verdict(ok)}")
    exits = all(r["exit_s"] is not None and r["exit_s"] <= EXIT_LIMIT_S for r in results)
    print(f"exit within {EXIT_LIMIT_S}s of SIGINT: {verdict(exits)}")
    return 0 if ok and exits and not any(r["error"] for r in results) else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60,
        help="give up on one start after this many seconds (60)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    print_machine("ctta demo start-up benchmark")
    sys.exit(main(arguments))
