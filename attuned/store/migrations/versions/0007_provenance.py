"""provenance of each activation: where the served content came from, and its files' digests

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Versions activated before this revision have no record (`attuned verify-store` says so).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import context, op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    own = context.config.attributes.get("own_schema", "attuned")
    auto = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "activation_provenance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pack_ref", auto(length=255), nullable=False),
        sa.Column("version", auto(length=64), nullable=False),
        sa.Column("digest", auto(length=64), nullable=False),
        sa.Column("source", auto(length=255), nullable=True),
        sa.Column("source_type", auto(length=32), nullable=False),
        sa.Column("source_url", auto(), nullable=True),
        sa.Column("source_revision", auto(length=255), nullable=True),
        sa.Column("source_tree", auto(length=64), nullable=True),
        sa.Column("signer", auto(), nullable=True),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("test_run_id", sa.Integer(), nullable=True),
        sa.Column("test_status", auto(length=16), nullable=True),
        sa.Column("tests_passed", sa.Integer(), nullable=True),
        sa.Column("tests_total", sa.Integer(), nullable=True),
        sa.Column("env_lock", auto(length=64), nullable=True),
        sa.Column("host", auto(length=255), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema=own,
    )
    # the newest record of a ref: what `show --provenance` and `verify-store` read
    op.create_index(
        "ix_attuned_activation_provenance_ref",
        "activation_provenance",
        ["pack_ref", "id"],
        schema=own,
    )


def downgrade() -> None:
    own = context.config.attributes.get("own_schema", "attuned")
    op.drop_table("activation_provenance", schema=own)
