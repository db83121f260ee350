"""Key material: event-signing keys per centre and the NKey users of the NATS backbone.

Both live in seeds files private to the operator (mode 600); in production each centre
keeps only its own seeds. The federation registry holds only public signing keys and is
what the hub reads; server configs hold only public NKeys, and a leaf its own seed.
The two are separate on purpose: a leaked NATS credential lets someone connect, not sign
as a centre, and a signing key is rotated by adding a key id, with no server change.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nkeys

from ctta.protocol.registry import FederationRegistry
from ctta.protocol.signing import SigningKey


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file that holds secrets: created with `mode` from the start, never readable
    by others for a moment as `write_text` followed by `chmod` would leave it."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(descriptor, mode)  # an existing file keeps its old mode through os.open
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


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
    write_private(path, json.dumps(payload, indent=2) + "\n")


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


# --- NATS credentials: NKey users of the backbone --------------------------------------


@dataclass(frozen=True)
class NKeyUser:
    """A NATS user key pair. The server config holds the public key; the client the seed."""

    seed: str

    @classmethod
    def generate(cls) -> NKeyUser:
        return cls(nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER).decode())

    @property
    def public_key(self) -> str:
        return nkeys.from_seed(self.seed.encode()).public_key.decode()


def ensure_nkeys(path: Path, users: list[str]) -> dict[str, NKeyUser]:
    """An NKey for every named user, created once and kept in a private seeds file."""
    known: dict[str, str] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    for user in users:
        known.setdefault(user, NKeyUser.generate().seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(dict(sorted(known.items())), indent=2) + "\n")
    return {user: NKeyUser(known[user]) for user in users}
