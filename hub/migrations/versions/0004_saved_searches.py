"""Saved searches of the centres.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "standing_query",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("centre", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("query", sa.JSON, nullable=False),
    )
    op.create_index("ix_standing_query_centre", "standing_query", ["centre"])


def downgrade() -> None:
    op.drop_table("standing_query")
