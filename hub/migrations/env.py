"""Alembic environment of the hub index."""

from sqlmodel import SQLModel

import ctta.hub.alerts.models
import ctta.hub.centres.models
import ctta.hub.index.models
import ctta.hub.matching.models
import ctta.hub.webhooks.models
import ctta.server.deadletters
import ctta.server.outbox.models  # noqa: F401  (register the tables)
from ctta.server.alembic_env import run

run(SQLModel.metadata, version_table="hub_alembic_version")
