"""Database tables. Types stay portable (SQLite and PostgreSQL); JSON holds what varies.

Test executions carry the pack ref as plain text, not a foreign key: they are the audit trail
and outlive rollbacks and removals.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(**kwargs: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True), **kwargs)


class PackRecord(SQLModel, table=True):
    __tablename__ = "pack"

    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(max_length=255, unique=True, index=True)
    label: str = Field(max_length=255)
    description: str = ""
    version: str = Field(max_length=64)
    digest: str = Field(max_length=64)
    # `metadata` is taken by SQLModel itself; the column keeps the natural name
    pack_metadata: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSON, nullable=False)
    )
    conf_schema: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    origin: str = ""  # where it was registered from: a path, or the source's entry
    source: str | None = Field(default=None, max_length=255, index=True)  # None: by hand
    source_revision: str | None = Field(default=None, max_length=255)
    enabled: bool = True
    system: bool = False
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class ComponentRecord(SQLModel, table=True):
    __tablename__ = "component"
    __table_args__ = (UniqueConstraint("kind", "ref", name="uq_component_kind_ref"),)

    id: int | None = Field(default=None, primary_key=True)
    pack_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("pack.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    kind: str = Field(max_length=64)
    name: str = Field(max_length=255)
    ref: str = Field(max_length=512, index=True)
    file: str = ""
    definition: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class TestExecutionRecord(SQLModel, table=True):
    __tablename__ = "pack_test_execution"
    __test__ = False

    id: int | None = Field(default=None, primary_key=True)
    pack_ref: str = Field(max_length=255, index=True)
    pack_version: str = Field(max_length=64)
    pack_digest: str = Field(default="", max_length=64)
    trigger_type: str = Field(max_length=32)  # register | reinstall | upgrade | manual
    status: str = Field(max_length=16)  # passed | failed | skipped | partial | error
    total_tests: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    pass_rate: float = 0.0
    duration_ms: int = 0
    gate_passed: bool = False
    gate_reason: str = ""
    outcome: str = Field(default="", max_length=32)  # registered | forced | warned | rolled_back
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    execution_time: datetime = _timestamp()
    created_at: datetime = _timestamp()


class PackRevision(SQLModel, table=True):
    """Each activation of a pack version: what was served, from where, when, and why it ended."""

    __tablename__ = "pack_revision"

    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(max_length=255, index=True)
    version: str = Field(max_length=64)
    digest: str = Field(max_length=64)
    source: str | None = Field(default=None, max_length=255)
    source_revision: str | None = Field(default=None, max_length=255)
    reason: str = Field(default="", max_length=32)  # install | upgrade | reinstall | register ...
    activated_at: datetime = _timestamp()
    deactivated_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    deactivation_reason: str | None = Field(default=None, max_length=32)


class PackSuspension(SQLModel, table=True):
    """A ref the daemon must leave alone (`attuned suspend`), whatever its sources say."""

    __tablename__ = "pack_suspension"

    ref: str = Field(primary_key=True, max_length=255)
    reason: str = ""
    created_at: datetime = _timestamp()


class PackArchive(SQLModel, table=True):
    """A pack's files, compressed, keyed by its digest: what followers fetch to serve the pack."""

    __tablename__ = "pack_archive"

    digest: str = Field(primary_key=True, max_length=64)  # sha256 hex, the pack digest
    size: int  # uncompressed: the sum of the files' sizes
    compressed_size: int
    data: bytes  # LargeBinary: BYTEA on PostgreSQL, BLOB on SQLite
    created_at: datetime = _timestamp()
