"""Index, full-text terms, dead letters and centre heartbeats.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "indexed_record",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("centre", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("record_id", sa.String(26), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("withdrawn", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("trl", sa.Integer, nullable=True),
        sa.Column("fields_text", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=True),
        sa.Column("event_id", sa.String(26), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("centre", "kind", "record_id", name="uq_indexed_record"),
    )
    op.create_index("ix_indexed_record_live", "indexed_record", ["withdrawn", "kind", "centre"])
    if op.get_bind().dialect.name == "sqlite":
        # Terms are pre-tokenised (CJK bigrams, lowercase words); FTS5 only splits on spaces.
        op.execute(
            "CREATE VIRTUAL TABLE record_fts "
            "USING fts5(terms, tokenize='unicode61 remove_diacritics 0')"
        )
    else:
        op.execute(
            "CREATE TABLE record_terms (pk integer PRIMARY KEY "
            "REFERENCES indexed_record(pk) ON DELETE CASCADE, terms tsvector NOT NULL)"
        )
        op.execute("CREATE INDEX ix_record_terms ON record_terms USING gin (terms)")
    op.create_table(
        "dead_letter",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stream_seq", sa.Integer, nullable=True),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("centre", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_dead_letter_stream_seq", "dead_letter", ["stream_seq"])
    op.create_table(
        "centre_heartbeat",
        sa.Column("centre", sa.String(32), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("node_url", sa.String, nullable=True),
        sa.Column("outbox_backlog", sa.Integer, nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("centre_heartbeat")
    op.drop_table("dead_letter")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE record_fts")
    else:
        op.execute("DROP TABLE record_terms")
    op.drop_table("indexed_record")
