"""attuned's own tables, in a schema of its own (`attuned`; on SQLite, beside Attune's).

What Attune reads lives in Attune's tables (`attuned.store.attune`); these hold what only
attuned needs: which packs it manages and from where, every test run (Attune's cascade
deletes a rolled-back pack's runs, the audit trail must not), activations, suspensions, the
pack contents followers fetch, and the event outbox. Nothing here has a foreign key into
Attune's schema: Attune's migrations must stay free to rebuild their tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast, overload

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Table,
)
from sqlmodel import Field, SQLModel

OWN_SCHEMA = "attuned"
_IN_OWN_SCHEMA = {"schema": OWN_SCHEMA}


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def aware(moment: datetime) -> datetime: ...
@overload
def aware(moment: None) -> None: ...
def aware(moment: datetime | None) -> datetime | None:
    """A time read back from the database, with its zone: SQLite returns them naive, and
    attuned writes only UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _timestamp(**kwargs: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True), **kwargs)


class ManagedPack(SQLModel, table=True):
    """A pack attuned registered: the Attune row it wrote (`pack_id`, `version`) and what
    only attuned knows about it. A row whose `pack_id`/`version` no longer match Attune's
    pack row is stale (someone else replaced or deleted the pack) and is ignored."""

    __tablename__ = "managed_pack"
    __table_args__ = _IN_OWN_SCHEMA

    ref: str = Field(primary_key=True, max_length=255)
    pack_id: int = Field(sa_type=BigInteger)
    version: str = Field(max_length=64)
    digest: str = Field(max_length=64)  # sha256 of the content, "" when unknown
    origin: str = ""  # where it was registered from: a path, or the source's entry
    source: str | None = Field(default=None, max_length=255, index=True)  # None: by hand
    source_revision: str | None = Field(default=None, max_length=255)
    # action ref -> runner_type that named no registered runtime yet: the action was
    # registered without one (as Attune's loader does) and is linked when a pack adds it
    pending_runtimes: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    # why Attune's rows of this pack lack something (set when 0004 converted an old database
    # and could not map every component); the daemon registers such a pack again
    incomplete: str | None = None
    # the `pack.config` attuned last wrote: a value an operator changed since is kept
    written_config: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class TestRun(SQLModel, table=True):
    """Every test run, kept whatever became of the pack (the audit trail). `attune_execution_id`
    is the same run in Attune's `pack_test_execution`, when Attune's table could hold it."""

    __tablename__ = "test_run"
    __table_args__ = _IN_OWN_SCHEMA
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
    source: str | None = Field(default=None, max_length=255)
    source_revision: str | None = Field(default=None, max_length=255)
    # "suite::case" of the cases that passed in the serving version and failed in this run
    regressions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    attune_execution_id: int | None = Field(default=None, sa_type=BigInteger)
    execution_time: datetime = _timestamp()
    created_at: datetime = _timestamp()


class TestCaseRecord(SQLModel, table=True):
    """One case of one run: the per-case history the regression gate, `history --case` and
    `compare` query. Kept for the newest runs of each pack (`testing.history.keep_runs`) and
    every run of the serving version; the run's `result` keeps them all, for the audit."""

    __tablename__ = "test_case"
    __table_args__ = (
        Index("ix_attuned_test_case_run", "run_id"),
        Index("ix_attuned_test_case_pack_run", "pack_ref", "run_id", "suite", "name"),
        _IN_OWN_SCHEMA,
    )
    __test__ = False

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey(f"{OWN_SCHEMA}.test_run.id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    pack_ref: str = Field(max_length=255)
    suite: str = Field(max_length=255)  # the runner's name in pack.yaml
    runner_type: str = Field(max_length=32)
    name: str  # as the format names it: JUnit classname.name, TAP description, unittest id
    status: str = Field(max_length=16)  # passed | failed | skipped | error
    duration_ms: int = 0
    message: str | None = None  # the failure's message, cut to MESSAGE_LIMIT


class PackRevision(SQLModel, table=True):
    """Each activation of a pack version: what was served, from where, when, and why it ended."""

    __tablename__ = "pack_revision"
    __table_args__ = _IN_OWN_SCHEMA

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


class ActivationProvenance(SQLModel, table=True):
    """Where each activated version came from and exactly what it was: written in the
    activation's transaction, so nothing is ever served without it, and kept (the audit
    trail). `files` lets `attuned verify-store` find a byte changed in the store since."""

    __tablename__ = "activation_provenance"
    __table_args__ = (
        Index("ix_attuned_activation_provenance_ref", "pack_ref", "id"),
        _IN_OWN_SCHEMA,
    )

    id: int | None = Field(default=None, primary_key=True)
    pack_ref: str = Field(max_length=255)
    version: str = Field(max_length=64)
    digest: str = Field(max_length=64)  # the pack's content digest (attuned.pack.content)
    source: str | None = Field(default=None, max_length=255)  # None: registered by hand
    source_type: str = Field(max_length=32)  # local_directory | local_archive | git
    source_url: str | None = None  # credentials redacted
    source_revision: str | None = Field(default=None, max_length=255)  # a git commit id
    source_tree: str | None = Field(default=None, max_length=64)  # the commit's tree id
    signer: str | None = None  # key and principal, or "unsigned (verification off)"
    # relative path -> sha256 hex of the file's content, as served
    files: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    test_run_id: int | None = None  # attuned's test_run.id; None when the tests were skipped
    test_status: str | None = Field(default=None, max_length=16)
    tests_passed: int | None = None
    tests_total: int | None = None
    env_lock: str | None = Field(default=None, max_length=64)  # the Python environment's key
    host: str = Field(default="", max_length=255)
    activated_at: datetime = _timestamp()


class PackSuspension(SQLModel, table=True):
    """A ref the daemon must leave alone (`attuned suspend`), whatever its sources say."""

    __tablename__ = "pack_suspension"
    __table_args__ = _IN_OWN_SCHEMA

    ref: str = Field(primary_key=True, max_length=255)
    reason: str = ""
    created_at: datetime = _timestamp()


class PackArchive(SQLModel, table=True):
    """A pack's files, compressed, keyed by its digest: what followers fetch to serve the pack."""

    __tablename__ = "pack_archive"
    __table_args__ = _IN_OWN_SCHEMA

    digest: str = Field(primary_key=True, max_length=64)  # sha256 hex, the pack digest
    size: int  # uncompressed: the sum of the files' sizes
    compressed_size: int
    data: bytes  # LargeBinary: BYTEA on PostgreSQL, BLOB on SQLite
    created_at: datetime = _timestamp()


class OutboxEvent(SQLModel, table=True):
    """A state change to tell the world about, written in the transaction of the change
    itself (so it is never lost and never invented). `id` is the event's stable identity,
    the idempotency key receivers see on every attempt; `seq` orders events."""

    __tablename__ = "outbox_event"
    __table_args__ = (
        Index("ix_attuned_outbox_event_id", "id", unique=True),
        _IN_OWN_SCHEMA,
    )

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=36)
    name: str = Field(max_length=64)  # the log's event name: pack.registered, source.error ...
    severity: str = Field(max_length=8)  # info | warning | error
    subject: str = Field(max_length=300)  # delivery order is kept per subject: pack:<ref> ...
    ref: str | None = Field(default=None, max_length=255, index=True)  # the pack, if any
    node: str = Field(default="", max_length=255)  # the host that wrote it
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _timestamp(index=True)


class OutboxDelivery(SQLModel, table=True):
    """One event on its way to one sink: pending until delivered or dead (attempts used up,
    or a refusal that no retry can change). The dispatcher's whole state: a restart resumes
    from these rows."""

    __tablename__ = "outbox_delivery"
    __table_args__ = (
        Index("ix_attuned_outbox_delivery_queue", "sink", "state", "subject", "event_seq"),
        Index("ix_attuned_outbox_delivery_event_sink", "event_seq", "sink", unique=True),
        _IN_OWN_SCHEMA,
    )

    id: int | None = Field(default=None, primary_key=True)
    event_seq: int = Field(
        sa_column=Column(
            Integer,
            ForeignKey(f"{OWN_SCHEMA}.outbox_event.seq", ondelete="CASCADE"),
            nullable=False,
        )
    )
    sink: str = Field(max_length=64)
    subject: str = Field(max_length=300)  # the event's, so the queue needs no join
    state: str = Field(default="pending", max_length=16)  # pending | delivered | dead
    attempts: int = 0
    next_attempt_at: datetime = _timestamp()
    last_attempt_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_error: str | None = None
    delivered_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


def table_of(model: type[SQLModel]) -> Table:
    """A model's Core table, typed (SQLModel leaves `__table__` untyped): for the bulk and
    Core statements that bypass the ORM."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


MANAGED_PACK = table_of(ManagedPack)
TEST_RUN = table_of(TestRun)
TEST_CASE = table_of(TestCaseRecord)
PACK_REVISION = table_of(PackRevision)
OUTBOX_EVENT = table_of(OutboxEvent)
OUTBOX_DELIVERY = table_of(OutboxDelivery)
