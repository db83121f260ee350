"""Hub settings, from `CTTA_*` environment variables or passed in by the caller."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ctta.protocol.backbone import HUB_INDEXER


class HubSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CTTA_", env_ignore_empty=True, extra="ignore")

    database_url: str = Field(
        default="", description="SQLAlchemy URL; default: SQLite file in data_dir"
    )
    data_dir: Path = Path("ctta-data")
    nats_url: str = Field(
        default="nats://127.0.0.1:4222", description="Server URL(s), comma-separated for a cluster"
    )
    nats_nkey_seed: SecretStr = Field(
        default=SecretStr(""), description="NKey seed of the hub's NATS user (leaf topology)"
    )
    registry_file: Path = Field(
        default=Path("deploy/federation.json"),
        description="The federation registry (centres, keys)",
    )
    consumer: str = Field(default=HUB_INDEXER, description="Durable consumer name on CTTA_EVENTS")
    reader_tokens: list[SecretStr] = Field(
        default_factory=list, description="Bearer tokens that may read alliance-only records"
    )
    ingest_batch: int = 256
    match_threshold: float = Field(
        default=0.45, ge=0, le=1, description="Route proposals at or above this"
    )
    matches_per_record: int = Field(default=5, ge=1, le=50)
    match_ann_threshold: int = Field(
        default=200_000,
        ge=1,
        description="Vectors beyond which dense search switches from exact to HNSW",
    )
    webhook_allow_http: bool = Field(
        default=False, description="Accept http:// webhook URLs (tests and local development only)"
    )
    webhook_max_attempts: int = Field(default=8, ge=1, le=30, description="Then a delivery is dead")
    matching: bool = Field(
        default=True, description="Run the matcher (needs the multilingual encoder)"
    )
    heartbeat_timeout_seconds: float = 20.0
    anti_entropy_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often each centre's manifest is compared with the index",
    )
    sqlite_synchronous: str = Field(default="FULL", pattern="^(FULL|NORMAL|EXTRA)$")

    @model_validator(mode="after")
    def _defaults(self) -> HubSettings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'hub.db'}"
        return self

    def reader_token_values(self) -> list[str]:
        return [token.get_secret_value() for token in self.reader_tokens]
