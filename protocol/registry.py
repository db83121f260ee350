"""The federation registry: which centres exist, where their nodes are, and their keys.

The hub trusts an event only if its signing key is listed here for the centre that
claims to have written it. The file is reviewed and distributed by the alliance; it is
never learnt from the backbone itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ctta.protocol.records import CentreId
from ctta.protocol.taxonomy import CENTRES


class CentreEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: CentreId
    name_zh: str
    name_en: str
    city: str = ""
    node_url: str | None = None
    keys: dict[str, str] = Field(
        default_factory=dict, description="Event-signing public keys by key id (base64url Ed25519)"
    )


class FederationRegistry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    centres: list[CentreEntry]

    @model_validator(mode="after")
    def _unique(self) -> FederationRegistry:
        seen: dict[str, str] = {}
        for centre in self.centres:
            for key_id in centre.keys:
                if key_id in seen:
                    raise ValueError(
                        f"key id {key_id!r} is listed for {seen[key_id]} and {centre.id}"
                    )
                seen[key_id] = centre.id
        ids = [centre.id for centre in self.centres]
        if len(ids) != len(set(ids)):
            raise ValueError("a centre id is listed twice")
        return self

    def centre(self, centre_id: str) -> CentreEntry | None:
        return next((centre for centre in self.centres if centre.id == centre_id), None)

    def key_owner(self, key_id: str) -> tuple[str, str] | None:
        """(centre id, public key) for a key id, or None if no centre lists it."""
        for centre in self.centres:
            if key_id in centre.keys:
                return centre.id, centre.keys[key_id]
        return None

    @classmethod
    def load(cls, path: Path) -> FederationRegistry:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def save(self, path: Path) -> None:
        text = json.dumps(self.model_dump(mode="json"), ensure_ascii=False, indent=2)
        path.write_text(text + "\n", encoding="utf-8")

    @classmethod
    def alliance(cls) -> FederationRegistry:
        """The eleven alliance centres with no node URLs or keys yet."""
        return cls(
            centres=[
                CentreEntry(id=c.id, name_zh=c.name_zh, name_en=c.name_en, city=c.city)
                for c in CENTRES
            ]
        )
