"""The shared body of the node's and the hub's Alembic `env.py`.

Migrations always run on a connection handed in by `ctta.server.db.migrate`; there is no
`alembic.ini` and no URL in a config file, so the same code serves every store.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData


def run(target_metadata: MetaData, version_table: str) -> None:
    """`version_table` is per application, so a node and the hub may even share a database."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through ctta.server.db.migrate(engine, …)")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=version_table,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
