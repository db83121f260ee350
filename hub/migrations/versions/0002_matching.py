"""Matches, record vectors and the outbox of match routes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "match",
        sa.Column("id", sa.String(25), primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("demand_centre", sa.String(32), nullable=False),
        sa.Column("demand_id", sa.String(26), nullable=False),
        sa.Column("achievement_centre", sa.String(32), nullable=False),
        sa.Column("achievement_id", sa.String(26), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("explanation", sa.JSON, nullable=False),
        sa.Column("demand_stage", sa.String(24), nullable=False),
        sa.Column("achievement_stage", sa.String(24), nullable=False),
        sa.Column("demand_sequence", sa.Integer, nullable=False),
        sa.Column("achievement_sequence", sa.Integer, nullable=False),
        sa.Column("local", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_match_demand", "match", ["demand_centre", "demand_id"])
    op.create_index("ix_match_achievement", "match", ["achievement_centre", "achievement_id"])
    op.create_table(
        "record_vector",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "outbox_event",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(26), nullable=False, unique=True),
        sa.Column("record_kind", sa.String(16), nullable=False),
        sa.Column("record_id", sa.String(26), nullable=False),
        sa.Column("record_version", sa.Integer, nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String, nullable=True),
    )
    op.create_index(
        "ix_outbox_unsent",
        "outbox_event",
        ["seq"],
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("outbox_event")
    op.drop_table("record_vector")
    op.drop_table("match")
