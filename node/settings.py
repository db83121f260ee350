"""Node settings, from `CTTA_*` environment variables or passed in by the caller."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ctta.protocol.signing import SigningKey
from ctta.protocol.taxonomy import CENTRE_ID_PATTERN
from ctta.server.auth import Principal, Role, settings_principals


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CTTA_", env_ignore_empty=True, extra="ignore")

    centre: str = Field(pattern=CENTRE_ID_PATTERN, description="This node's centre id")
    database_url: str = Field(
        default="", description="SQLAlchemy URL; default: SQLite file in data_dir"
    )
    data_dir: Path = Path("ctta-data")
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="The backbone: this centre's leaf server in the production topology",
    )
    nats_nkey_seed: SecretStr = Field(
        default=SecretStr(""), description="NKey seed, if the NATS server asks for one"
    )
    hub_url: str = Field(
        default="http://127.0.0.1:8700", description="Base of the dataschema URLs in events"
    )
    public_url: str | None = Field(
        default=None, description="This node's URL, announced in heartbeats"
    )
    signing_key_id: str = Field(
        default="", description="Event-signing key id, e.g. 'eastern#2026-1'"
    )
    signing_key_seed: SecretStr = Field(default=SecretStr(""), description="base64url Ed25519 seed")
    staff_tokens: list[SecretStr] = Field(
        default_factory=list, description="Bearer tokens with the staff role (writes, private)"
    )
    admin_tokens: list[SecretStr] = Field(
        default_factory=list,
        description="Bearer tokens with the admin role, to bootstrap token management",
    )
    max_request_bytes: int = Field(
        default=1024 * 1024, ge=0, description="Largest request body accepted; 0: no limit"
    )
    write_rate_per_second: float = Field(
        default=50.0, ge=0, description="Sustained writes per token (or address); 0: no limit"
    )
    write_burst: int = Field(default=200, ge=1, description="Writes allowed at once per token")
    heartbeat_seconds: float = 5.0
    relay_batch: int = 200
    relay_max_backoff_seconds: float = 5.0
    sqlite_synchronous: str = Field(default="FULL", pattern="^(FULL|NORMAL|EXTRA)$")

    @field_validator("staff_tokens", "admin_tokens")
    @classmethod
    def _long_enough(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        for token in tokens:
            if len(token.get_secret_value()) < 16:
                raise ValueError("tokens must be at least 16 characters")
        return tokens

    @model_validator(mode="after")
    def _defaults(self) -> NodeSettings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / f'node-{self.centre}.db'}"
        if not self.signing_key_id or not self.signing_key_seed.get_secret_value():
            raise ValueError("set CTTA_SIGNING_KEY_ID and CTTA_SIGNING_KEY_SEED (see `ctta keys`)")
        if not self.signing_key_id.startswith(f"{self.centre}#"):
            raise ValueError(f"signing key id must start with '{self.centre}#'")
        return self

    def signing_key(self) -> SigningKey:
        return SigningKey.from_seed(self.signing_key_id, self.signing_key_seed.get_secret_value())

    def settings_principals(self) -> dict[str, Principal]:
        """The tokens from the environment, by hash; admin wins if a token is in both lists."""
        return {
            **settings_principals((t.get_secret_value() for t in self.staff_tokens), Role.STAFF),
            **settings_principals((t.get_secret_value() for t in self.admin_tokens), Role.ADMIN),
        }
