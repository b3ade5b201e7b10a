"""Alembic environment: runs on the connection attuned hands over (never its own URL parsing).

The version table lives in attuned's own schema (`attuned`; SQLite has none), beside the
tables it versions; Attune's tables are not alembic's business.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from attuned.store import models

target_metadata = SQLModel.metadata
config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # run from the alembic CLI: open our own
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as own:
            _run_on(own)
        return
    _run_on(connection)


def _include(obj: Any, _name: str | None, kind: str, _reflected: bool, _compare: Any) -> bool:
    """Compare only attuned's own tables (Attune's and the legacy ones are not ours)."""
    if kind == "table":
        return bool(getattr(obj, "schema", None) in (models.OWN_SCHEMA, None))
    return True


def _run_on(connection: Any) -> None:
    own_schema = config.attributes.get("own_schema", models.OWN_SCHEMA)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        version_table_schema=own_schema,
        include_schemas=own_schema is not None,
        include_object=_include,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
