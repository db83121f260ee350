"""Anti-entropy: the manifest summary of each heartbeat and the per-centre sync state.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("centre_heartbeat") as table:
        table.add_column(sa.Column("manifest_count", sa.Integer, nullable=True))
        table.add_column(sa.Column("manifest_digest", sa.String(64), nullable=True))
    op.create_table(
        "centre_sync",
        sa.Column("centre", sa.String(32), primary_key=True),
        sa.Column("node_count", sa.Integer, nullable=False),
        sa.Column("node_digest", sa.String(64), nullable=False),
        sa.Column("hub_count", sa.Integer, nullable=False),
        sa.Column("hub_digest", sa.String(64), nullable=False),
        sa.Column("in_sync", sa.Boolean, nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mismatched_checks", sa.Integer, nullable=False),
        sa.Column("mismatched_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("repairs_requested", sa.Integer, nullable=False),
        sa.Column("repairs_since_in_sync", sa.Integer, nullable=False),
        sa.Column("last_repair_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_request_id", sa.String(26), nullable=True),
        sa.Column("last_in_sync_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("centre_sync")
    with op.batch_alter_table("centre_heartbeat") as table:
        table.drop_column("manifest_digest")
        table.drop_column("manifest_count")
