"""the event outbox: events written with the changes they report, and their deliveries

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    own = context.config.attributes.get("own_schema", "attuned")
    auto = sqlmodel.sql.sqltypes.AutoString
    when = sa.DateTime(timezone=True)
    op.create_table(
        "outbox_event",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("id", auto(length=36), nullable=False),
        sa.Column("name", auto(length=64), nullable=False),
        sa.Column("severity", auto(length=8), nullable=False),
        sa.Column("subject", auto(length=300), nullable=False),
        sa.Column("ref", auto(length=255), nullable=True),
        sa.Column("node", auto(length=255), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        schema=own,
    )
    op.create_index("ix_attuned_outbox_event_id", "outbox_event", ["id"], unique=True, schema=own)
    op.create_index("ix_attuned_outbox_event_ref", "outbox_event", ["ref"], schema=own)
    op.create_index(
        "ix_attuned_outbox_event_created_at", "outbox_event", ["created_at"], schema=own
    )
    event_seq = f"{own}.outbox_event.seq" if own else "outbox_event.seq"
    op.create_table(
        "outbox_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        sa.Column("sink", auto(length=64), nullable=False),
        sa.Column("subject", auto(length=300), nullable=False),
        sa.Column("state", auto(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", when, nullable=False),
        sa.Column("last_attempt_at", when, nullable=True),
        sa.Column("last_error", auto(), nullable=True),
        sa.Column("delivered_at", when, nullable=True),
        sa.ForeignKeyConstraint(["event_seq"], [event_seq], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        schema=own,
    )
    op.create_index(
        "ix_attuned_outbox_delivery_queue",
        "outbox_delivery",
        ["sink", "state", "subject", "event_seq"],
        schema=own,
    )
    op.create_index(
        "ix_attuned_outbox_delivery_event_sink",
        "outbox_delivery",
        ["event_seq", "sink"],
        unique=True,
        schema=own,
    )


def downgrade() -> None:
    own = context.config.attributes.get("own_schema", "attuned")
    op.drop_table("outbox_delivery", schema=own)
    op.drop_table("outbox_event", schema=own)
