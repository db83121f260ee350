"""Stored bearer tokens (hashes only) and the audit log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_token_id", sa.String(26), nullable=True),
        sa.Column("actor_label", sa.String(100), nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
    )
    op.create_index("ix_audit_entry_actor_token_id", "audit_entry", ["actor_token_id"])
    op.create_index("ix_audit_entry_entity_id", "audit_entry", ["entity_id"])


def downgrade() -> None:
    op.drop_table("audit_entry")
    op.drop_table("api_token")
