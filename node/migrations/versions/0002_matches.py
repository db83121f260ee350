"""Inbox of routed matches and dead letters.

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
        "inbox_match",
        sa.Column("id", sa.String(25), primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("demand_centre", sa.String(32), nullable=False),
        sa.Column("demand_id", sa.String(26), nullable=False),
        sa.Column("achievement_centre", sa.String(32), nullable=False),
        sa.Column("achievement_id", sa.String(26), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("explanation", sa.JSON, nullable=False),
        sa.Column("titles", sa.JSON, nullable=False),
        sa.Column("stage", sa.String(24), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("reason", sa.String, nullable=True),
        sa.Column("reason_text", sa.String, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_inbox_match_status", "inbox_match", ["status"])
    op.create_index("ix_inbox_match_demand_id", "inbox_match", ["demand_id"])
    op.create_index("ix_inbox_match_achievement_id", "inbox_match", ["achievement_id"])
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


def downgrade() -> None:
    op.drop_table("dead_letter")
    op.drop_table("inbox_match")
