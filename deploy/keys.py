"""Event-signing keys per centre, kept in a seeds file beside the federation registry.

The seeds file is private to the operator (each centre keeps only its own seed in
production); the registry holds only public keys and is what the hub reads.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from ctta.protocol.registry import FederationRegistry
from ctta.protocol.signing import SigningKey


def new_key(centre: str) -> SigningKey:
    return SigningKey.generate(f"{centre}#{datetime.now(UTC):%Y%m%d%H%M%S}")


def load_seeds(path: Path) -> dict[str, SigningKey]:
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {
        centre: SigningKey.from_seed(entry["key_id"], entry["seed"])
        for centre, entry in raw.items()
    }


def save_seeds(path: Path, keys: dict[str, SigningKey]) -> None:
    payload = {c: {"key_id": k.key_id, "seed": k.seed_b64()} for c, k in sorted(keys.items())}
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.chmod(path, 0o600)


def ensure_keys(
    registry: FederationRegistry, seeds_file: Path, centres: list[str]
) -> dict[str, SigningKey]:
    """A key for every centre, created once and listed in the registry."""
    keys = load_seeds(seeds_file)
    for centre_id in centres:
        if centre_id not in keys:
            keys[centre_id] = new_key(centre_id)
        entry = registry.centre(centre_id)
        if entry is None:
            raise ValueError(f"centre {centre_id!r} is not in the federation registry")
        entry.keys.setdefault(keys[centre_id].key_id, keys[centre_id].public_key_b64())
    save_seeds(seeds_file, keys)
    return keys
