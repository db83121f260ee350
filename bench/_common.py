"""Shared helpers of the benchmark scripts: machine description, percentiles, signed events."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys

from ctta.protocol.envelope import WireEvent, build_event, record_event_type
from ctta.protocol.records import PublishedAchievement
from ctta.protocol.signing import SigningKey
from ctta.protocol.subjects import record_subject
from ctta.protocol.taxonomy import RecordKind


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram() -> str:
    try:
        out = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Mem:"):
                return line.split()[1]
    except OSError:
        pass
    return "unknown"


def print_machine(title: str) -> None:
    print(f"== {title}")
    print(f"date     : {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}")
    print(f"machine  : nproc={os.cpu_count()}  cpu={cpu_model()}  ram={ram()}")
    print(f"python   : {sys.version.split()[0]} ({sys.executable})")
    print(f"command  : {' '.join(sys.argv)}", flush=True)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def signed_upsert(record: PublishedAchievement, key: SigningKey) -> WireEvent:
    """An achievement's upsert event as its centre's node would publish it, for loading
    the backbone directly where the node API would be the bottleneck."""
    kind = RecordKind.ACHIEVEMENT
    return build_event(
        nats_subject=record_subject(record.centre, kind, record.id),
        centre=record.centre,
        event_type=record_event_type(kind, "upserted"),
        ce_subject=f"{kind.value}/{record.id}",
        version=record.version,
        data=record.model_dump(mode="json"),
        dataschema="http://127.0.0.1:8700/api/v1/schemas/achievement.json",
        signing_key=key,
        time=record.updated_at,
    )
