"""Alembic environment of the node store."""

from sqlmodel import SQLModel

from ctta.server.alembic_env import run

run(SQLModel.metadata, version_table="node_alembic_version")
