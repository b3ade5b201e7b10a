"""per-case test history: one row per case of each run, and a run's source and regressions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

Existing runs get their case rows from their stored `result` (the newest 50 of each pack and
every run of the digest it serves, as the default retention keeps them).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_KEEP = 50  # testing.history.keep_runs' default
_MESSAGE_LIMIT = 1000


def upgrade() -> None:
    own = context.config.attributes.get("own_schema", "attuned")
    auto = sqlmodel.sql.sqltypes.AutoString
    with op.batch_alter_table("test_run", schema=own) as batch:
        batch.add_column(sa.Column("source", auto(length=255), nullable=True))
        batch.add_column(sa.Column("source_revision", auto(length=255), nullable=True))
        batch.add_column(
            # the default fills the existing rows; attuned always writes the column
            sa.Column("regressions", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    run_id = f"{own}.test_run.id" if own else "test_run.id"
    op.create_table(
        "test_case",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("pack_ref", auto(length=255), nullable=False),
        sa.Column("suite", auto(length=255), nullable=False),
        sa.Column("runner_type", auto(length=32), nullable=False),
        sa.Column("name", auto(), nullable=False),
        sa.Column("status", auto(length=16), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("message", auto(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], [run_id], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        schema=own,
    )
    op.create_index("ix_attuned_test_case_run", "test_case", ["run_id"], schema=own)
    # a run's rows land together at the end of its pack's range (an index led by the case
    # name put each of them on another page: 4x the cost of a registration); covering, so
    # a case's runs are read from the index alone
    op.create_index(
        "ix_attuned_test_case_pack_run",
        "test_case",
        ["pack_ref", "run_id", "suite", "name"],
        schema=own,
    )
    _backfill(op.get_bind(), own)


def _backfill(bind: sa.Connection, own: str | None) -> None:
    meta = sa.MetaData(schema=own)
    runs = sa.Table("test_run", meta, autoload_with=bind)
    managed = sa.Table("managed_pack", meta, autoload_with=bind)
    cases = sa.Table("test_case", meta, autoload_with=bind)
    serving = {
        ref: digest for ref, digest in bind.execute(sa.select(managed.c.ref, managed.c.digest))
    }
    seen: dict[str, int] = {}
    query = sa.select(runs.c.id, runs.c.pack_ref, runs.c.pack_digest, runs.c.result).order_by(
        runs.c.id.desc()
    )
    for run, ref, digest, result in bind.execute(query):
        seen[ref] = seen.get(ref, 0) + 1
        if seen[ref] > _KEEP and not (digest and serving.get(ref) == digest):
            continue
        rows = _case_rows(run, ref, result or {})
        if rows:
            bind.execute(sa.insert(cases), rows)


def _case_rows(run: int, ref: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for suite in result.get("test_suites") or []:
        for case in suite.get("test_cases") or []:
            key = (str(suite.get("name", "")), str(case.get("name", "")))
            message = case.get("error_message")
            rows.setdefault(
                key,
                {
                    "run_id": run,
                    "pack_ref": ref,
                    "suite": key[0],
                    "runner_type": str(suite.get("runner_type", ""))[:32],
                    "name": key[1],
                    "status": str(case.get("status", ""))[:16],
                    "duration_ms": int(case.get("duration_ms") or 0),
                    "message": message[:_MESSAGE_LIMIT] if message else None,
                },
            )
    return list(rows.values())


def downgrade() -> None:
    own = context.config.attributes.get("own_schema", "attuned")
    op.drop_table("test_case", schema=own)
    with op.batch_alter_table("test_run", schema=own) as batch:
        batch.drop_column("regressions")
        batch.drop_column("source_revision")
        batch.drop_column("source")
