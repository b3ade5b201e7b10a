"""Attune's pack tables as SQLAlchemy Core tables, column for column as Attune's migrations
make them (`../shared/attune-schema/migrations`, 20250101000002 ... 0007).

On PostgreSQL these describe tables that Attune created: attuned never runs DDL on them, and
every statement names its columns, so columns a newer Attune adds (with defaults) are left
alone. On SQLite (and on a PostgreSQL database asked to, for demos) attuned creates the same
tables from these definitions: `TEXT[]` and `JSONB` become JSON there. Python never fills a
default: what a statement does not name, the database defaults.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeEngine

SCHEMA = "attune"
metadata = MetaData(schema=SCHEMA)

# BIGSERIAL on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY
_ID = BigInteger().with_variant(Integer(), "sqlite")
_REF = BigInteger().with_variant(Integer(), "sqlite")
# SQL NULL for None (Attune binds Option::None as NULL), not the JSON literal null
_JSON: TypeEngine[Any] = JSON(none_as_null=True).with_variant(
    JSONB(none_as_null=True), "postgresql"
)
_TEXTS: TypeEngine[Any] = JSON(none_as_null=True).with_variant(ARRAY(Text()), "postgresql")
_NOW = func.now()
_EMPTY_OBJECT = text("'{}'")
_EMPTY_LIST = text("'[]'")


def _when(name: str) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=False, server_default=_NOW)


class _EmptyTexts(FunctionElement[object]):
    """The default of an empty `TEXT[]`: `ARRAY[]::TEXT[]` on PostgreSQL, `[]` (JSON) else."""

    inherit_cache = True


@compiles(_EmptyTexts, "postgresql")
def _empty_array(_element: _EmptyTexts, _compiler: object, **_kw: object) -> str:
    return "ARRAY[]::TEXT[]"


@compiles(_EmptyTexts)
def _empty_json_list(_element: _EmptyTexts, _compiler: object, **_kw: object) -> str:
    return "'[]'"


def _empty_texts() -> _EmptyTexts:
    return _EmptyTexts()


def _pack_fk(nullable: bool = True) -> Column[object]:
    return Column(
        "pack", _REF, ForeignKey("pack.id", ondelete="CASCADE"), nullable=nullable, index=True
    )


RETENTION = Enum(
    "versions", "days", "hours", "minutes", name="artifact_retention_enum", create_constraint=False
)


def _component(*, pack_required: bool = False, label: bool = True) -> list[Column[object]]:
    """The columns every component table starts with: id, ref, the pack (FK and ref) and,
    where the table has them, label and description."""
    columns: list[Column[object]] = [
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("ref", Text, nullable=False, unique=True),
        _pack_fk(nullable=not pack_required),
        Column("pack_ref", Text, nullable=not pack_required),
    ]
    if label:
        columns.append(Column("label", Text, nullable=False))
    columns.append(Column("description", Text))
    return columns


def _placement() -> list[Column[object]]:
    """Where actions and sensors may run (Attune's worker scheduling)."""
    return [
        Column("worker_selector", _JSON, nullable=False, server_default=_EMPTY_OBJECT),
        Column("worker_tolerations", _JSON, nullable=False, server_default=_EMPTY_LIST),
        Column("worker_affinity", _JSON, nullable=False, server_default=_EMPTY_OBJECT),
    ]


def _retention() -> list[Column[object]]:
    """How long an action's or a sensor's logs and artifacts are kept."""
    return [
        Column("log_retention_policy", RETENTION),
        Column("log_retention_limit", Integer),
        Column("artifact_retention_policy", RETENTION),
        Column("artifact_retention_limit", Integer),
    ]


def _timestamps() -> list[Column[object]]:
    return [_when("created"), _when("updated")]


pack = Table(
    "pack",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("ref", Text, nullable=False, unique=True),
    Column("label", Text, nullable=False),
    Column("description", Text),
    Column("version", Text, nullable=False),
    Column("conf_schema", _JSON, nullable=False, server_default=_EMPTY_OBJECT),
    Column("config", _JSON, nullable=False, server_default=_EMPTY_OBJECT),
    Column("meta", _JSON, nullable=False, server_default=_EMPTY_OBJECT),
    Column("tags", _TEXTS, nullable=False, server_default=_empty_texts()),
    Column("runtime_deps", _TEXTS, nullable=False, server_default=_empty_texts()),
    Column("dependencies", _TEXTS, nullable=False, server_default=_empty_texts()),
    Column("is_standard", Boolean, nullable=False, server_default=text("false")),
    Column("installers", _JSON, server_default=_EMPTY_LIST),
    Column("source_type", Text),
    Column("source_url", Text),
    Column("source_ref", Text),
    Column("checksum", Text),
    Column("checksum_verified", Boolean, server_default=text("false")),
    Column("installed_at", DateTime(timezone=True)),
    Column("installed_by", BigInteger),
    Column("installation_method", Text),
    Column("storage_path", Text),
    *_timestamps(),
    CheckConstraint("ref = LOWER(ref)", name="pack_ref_lowercase"),
)

runtime = Table(
    "runtime",
    metadata,
    *_component(label=False),
    Column("name", Text, nullable=False, index=True),
    Column("aliases", _TEXTS, nullable=False, server_default=_empty_texts()),
    Column("distributions", _JSON, nullable=False),
    Column("installation", _JSON),
    Column("installers", _JSON, server_default=_EMPTY_LIST),
    Column("execution_config", _JSON, nullable=False, server_default=_EMPTY_OBJECT),
    Column("auto_detected", Boolean, nullable=False, server_default=text("false")),
    Column("detection_config", _JSON, nullable=False, server_default=_EMPTY_OBJECT),
    *_timestamps(),
    CheckConstraint("ref = LOWER(ref)", name="runtime_ref_lowercase"),
)

runtime_version = Table(
    "runtime_version",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column(
        "runtime", _REF, ForeignKey("runtime.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("runtime_ref", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("version_major", Integer),
    Column("version_minor", Integer),
    Column("version_patch", Integer),
    Column("execution_config", _JSON, nullable=False, server_default=_EMPTY_OBJECT),
    Column("distributions", _JSON, nullable=False, server_default=_EMPTY_OBJECT),
    Column("is_default", Boolean, nullable=False, server_default=text("false")),
    Column("available", Boolean, nullable=False, server_default=text("true")),
    Column("verified_at", DateTime(timezone=True)),
    Column("meta", _JSON, nullable=False, server_default=_EMPTY_OBJECT),
    *_timestamps(),
    UniqueConstraint("runtime", "version", name="runtime_version_unique"),
)

permission_set = Table(
    "permission_set",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("ref", Text, nullable=False, unique=True),
    _pack_fk(),
    Column("pack_ref", Text),
    Column("label", Text),  # the one component whose label may be NULL
    Column("description", Text),
    Column("grants", _JSON, nullable=False, server_default=_EMPTY_LIST),
    *_timestamps(),
    CheckConstraint("ref = LOWER(ref)", name="permission_set_ref_lowercase"),
)

trigger = Table(
    "trigger",
    metadata,
    *_component(),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("is_adhoc", Boolean, nullable=False, server_default=text("false")),
    Column("param_schema", _JSON),
    Column("out_schema", _JSON),
    Column("webhook_enabled", Boolean, nullable=False, server_default=text("false")),
    Column("webhook_key", String(64), unique=True),
    Column("webhook_config", _JSON, server_default=_EMPTY_OBJECT),
    Column(
        "sensor",
        _REF,
        ForeignKey("sensor.id", ondelete="SET NULL", use_alter=True, name="trigger_sensor_fk"),
    ),
    Column("sensor_ref", Text),
    *_timestamps(),
    CheckConstraint("ref = LOWER(ref)", name="trigger_ref_lowercase"),
)

sensor = Table(
    "sensor",
    metadata,
    *_component(),
    Column("entrypoint", Text, nullable=False),
    Column(
        "runtime", _REF, ForeignKey("runtime.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("runtime_ref", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("is_adhoc", Boolean, nullable=False, server_default=text("false")),
    Column("param_schema", _JSON),
    Column("config", _JSON),
    Column("runtime_version_constraint", Text),
    *_placement(),
    *_retention(),
    *_timestamps(),
    CheckConstraint("ref = LOWER(ref)", name="sensor_ref_lowercase"),
)

workflow_definition = Table(
    "workflow_definition",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("ref", String(255), nullable=False, unique=True),
    _pack_fk(nullable=False),
    Column("pack_ref", String(255), nullable=False),
    Column("label", String(255), nullable=False),
    Column("description", Text),
    Column("version", String(50), nullable=False),
    Column("param_schema", _JSON),
    Column("out_schema", _JSON),
    Column("definition", _JSON, nullable=False),
    Column("tags", _TEXTS, server_default=_empty_texts()),
    *_timestamps(),
)

action = Table(
    "action",
    metadata,
    *_component(pack_required=True),
    Column("entrypoint", Text, nullable=False),
    Column("runtime", _REF, ForeignKey("runtime.id"), index=True),  # no cascade, as Attune's
    Column("param_schema", _JSON),
    Column("out_schema", _JSON),
    Column("parameter_delivery", Text, nullable=False, server_default=text("'stdin'")),
    Column("parameter_format", Text, nullable=False, server_default=text("'json'")),
    Column("output_format", Text, nullable=False, server_default=text("'text'")),
    Column("is_adhoc", Boolean, nullable=False, server_default=text("false")),
    Column("timeout_seconds", Integer),
    Column("max_retries", Integer, server_default=text("0")),
    Column("runtime_version_constraint", Text),
    Column("accesses_mcp", Boolean, nullable=False, server_default=text("false")),
    Column(
        "default_execution_permission_set_refs",
        _TEXTS,
        nullable=False,
        server_default=_empty_texts(),
    ),
    *_retention(),
    *_timestamps(),
    Column(  # the columns Attune's workflow migration (0006) added
        "workflow_def",
        _REF,
        ForeignKey("workflow_definition.id", ondelete="CASCADE"),
        index=True,
    ),
    Column("required_worker_runtimes", _JSON, nullable=False, server_default=_EMPTY_OBJECT),
    *_placement(),
    CheckConstraint("ref = LOWER(ref)", name="action_ref_lowercase"),
    CheckConstraint("parameter_delivery IN ('stdin', 'file')", name="action_delivery_check"),
    CheckConstraint("parameter_format IN ('dotenv', 'json', 'yaml')", name="action_format_check"),
    CheckConstraint(
        "output_format IN ('text', 'json', 'yaml', 'jsonl')", name="action_output_check"
    ),
)

rule = Table(
    "rule",
    metadata,
    *_component(pack_required=True),
    Column("action", _REF, ForeignKey("action.id", ondelete="SET NULL"), index=True),
    Column("action_ref", Text, nullable=False),
    Column("trigger", _REF, ForeignKey("trigger.id", ondelete="SET NULL"), index=True),
    Column("trigger_ref", Text, nullable=False),
    Column("conditions", _JSON, nullable=False, server_default=_EMPTY_LIST),
    Column("action_params", _JSON, server_default=_EMPTY_OBJECT),
    Column("trigger_params", _JSON, server_default=_EMPTY_OBJECT),
    Column("permission_set_refs", _TEXTS),
    Column("enabled", Boolean, nullable=False),
    Column("is_adhoc", Boolean, nullable=False, server_default=text("false")),
    Column("owner_identity", BigInteger),  # FK to Attune's identity table, not created here
    *_timestamps(),
    CheckConstraint("ref = LOWER(ref)", name="rule_ref_lowercase"),
)

pack_test_execution = Table(
    "pack_test_execution",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("pack_id", _REF, ForeignKey("pack.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("pack_version", String(50), nullable=False),
    Column("execution_time", DateTime(timezone=True), nullable=False, server_default=_NOW),
    Column("trigger_reason", String(50), nullable=False),
    Column("total_tests", Integer, nullable=False),
    Column("passed", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),
    Column("pass_rate", Numeric(5, 4, asdecimal=False), nullable=False),
    Column("duration_ms", BigInteger, nullable=False),
    Column("result", _JSON, nullable=False),
    _when("created"),
    CheckConstraint(
        "trigger_reason IN ('install', 'update', 'manual', 'validation')",
        name="valid_trigger_reason",
    ),
    CheckConstraint("pass_rate >= 0.0 AND pass_rate <= 1.0", name="valid_pass_rate"),
)
Index("idx_pack_test_execution_time", pack_test_execution.c.execution_time.desc())

# the component tables, in Attune's load order (permission sets first, sensors last)
COMPONENT_TABLES = (permission_set, runtime, trigger, action, rule, sensor, workflow_definition)

# Attune's views over the test executions (migration 20250101000007), for attuned-made
# tables; on Attune's own database they already exist
VIEWS = (
    """
    CREATE VIEW {schema}pack_test_summary AS
    SELECT
        p.id AS pack_id,
        p.ref AS pack_ref,
        p.label AS pack_label,
        pte.id AS test_execution_id,
        pte.pack_version,
        pte.execution_time AS test_time,
        pte.trigger_reason,
        pte.total_tests,
        pte.passed,
        pte.failed,
        pte.skipped,
        pte.pass_rate,
        pte.duration_ms,
        ROW_NUMBER() OVER (PARTITION BY p.id ORDER BY pte.execution_time DESC) AS rn
    FROM {schema}pack p
    LEFT JOIN {schema}pack_test_execution pte ON p.id = pte.pack_id
    WHERE pte.id IS NOT NULL
    """,
    """
    CREATE VIEW {schema}pack_latest_test AS
    SELECT pack_id, pack_ref, pack_label, test_execution_id, pack_version, test_time,
           trigger_reason, total_tests, passed, failed, skipped, pass_rate, duration_ms
    FROM {schema}pack_test_summary
    WHERE rn = 1
    """,
)
