"""Alembic environment of the node store."""

import ctta.node.outbox.models
import ctta.node.records.models  # noqa: F401  (register the tables)
from ctta.server.alembic_env import run
from sqlmodel import SQLModel

run(SQLModel.metadata, version_table="node_alembic_version")
