"""Alembic environment of the node store."""

from sqlmodel import SQLModel

import ctta.server.outbox.models
import ctta.node.records.models  # noqa: F401  (register the tables)
from ctta.server.alembic_env import run

run(SQLModel.metadata, version_table="node_alembic_version")
