"""`ctta demo` as a user runs it: a real process, real ports, Ctrl-C, and a second start."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ctta.deploy.demo import sample_records
from ctta.deploy.natsserver import free_port
from ctta.protocol.taxonomy import CENTRES

TOKEN = "demo-test-token-0123456789"


def _published_samples() -> int:
    return sum(
        1
        for centre in CENTRES
        for item in sample_records(centre.id)
        if item["content"].get("visibility", "public") != "private"
    )


def _start(
    data_dir: Path, hub_port: int, nats_port: int
) -> tuple[subprocess.Popen[str], list[str]]:
    command = [
        str(Path(sys.executable).parent / "ctta"),
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
    command.insert(1, "--log-level=INFO")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 90
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            raise AssertionError("demo exited early:\n" + "".join(lines))
        lines.append(line)
        if line.startswith("Ctrl-C stops everything"):
            return process, lines
    process.kill()
    raise AssertionError("demo not ready within 90 s:\n" + "".join(lines))


def _stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    try:
        # 1.2 s on a quiet machine (docs/benchmarks.md); CI runs this beside the load tests.
        return process.wait(timeout=45)
    except subprocess.TimeoutExpired:
        process.kill()
        output = process.stdout.read() if process.stdout else ""
        raise AssertionError(
            f"demo did not stop within 45 s of SIGINT; it printed:\n{output}"
        ) from None


def _wait_for_total(hub: str, expected: int) -> int:
    deadline = time.monotonic() + 90  # generous: CI runs this beside the load tests
    total = -1
    while time.monotonic() < deadline:
        response = httpx.get(f"{hub}/api/v1/search", headers={"Authorization": f"Bearer {TOKEN}"})
        total = response.json()["total"]
        if total == expected:
            return total
        time.sleep(0.2)
    return total


@pytest.mark.slow
@pytest.mark.timeout(300)  # two full starts of twelve services; CI runs it beside load tests
def test_demo_starts_serves_stops_and_restarts_with_its_data(tmp_path: Path) -> None:
    hub_port = free_port()
    while any(p == 4222 for p in range(hub_port, hub_port + 12)):
        hub_port = free_port()
    nats_port = free_port()
    hub = f"http://127.0.0.1:{hub_port}"
    expected = _published_samples()
    assert expected >= 11 * 30

    process, lines = _start(tmp_path / "demo", hub_port, nats_port)
    try:
        output = "".join(lines)
        assert f"loaded {sum(len(sample_records(c.id)) for c in CENTRES)} sample records" in output
        assert f"hub       {hub}" in output and output.count("/docs") == 12
        assert _wait_for_total(hub, expected) == expected
        centres = httpx.get(f"{hub}/api/v1/centres").json()
        assert len(centres) == 11
        node = httpx.get(f"http://127.0.0.1:{hub_port + 1}/openapi.json")
        assert node.status_code == 200 and "/api/v1/achievements" in node.json()["paths"]
        hits = httpx.get(f"{hub}/api/v1/search", params={"q": "电池"}).json()
        assert hits["total"] > 0 and {hit["kind"] for hit in hits["hits"]} <= {
            "achievement",
            "demand",
            "professional",
            "case",
        }
    finally:
        assert _stop(process) == 0

    process, lines = _start(tmp_path / "demo", hub_port, nats_port)
    try:
        assert "loaded" not in "".join(lines), "a second start reuses the data"
        assert _wait_for_total(hub, expected) == expected
        registry = json.loads((tmp_path / "demo" / "federation.json").read_text())
        assert all(centre["keys"] for centre in registry["centres"])
    finally:
        assert _stop(process) == 0
