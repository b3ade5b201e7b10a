"""Find Attune's tables in the database, or create Attune-shaped ones where that is allowed.

On PostgreSQL, Attune's migrations own schema `attune`: attuned checks that every table and
column it writes is there and refuses to start otherwise, naming what is missing and how to
fix it. Creating them is for SQLite (the embedded default) and for demos and tests
(`database.create_attune_tables`), never for a database Attune already set up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, text

from attuned.errors import AttunedError
from attuned.store.attune import tables
from attuned.store.attune.tables import SCHEMA, VIEWS

CHECKED_AGAINST = "Attune migrations 20250101000001-0007 and 0012 (attune commit 9206d41, 2026-06)"


class AttuneSchemaMissing(AttunedError):
    """The database has no (or an incomplete) Attune schema and may not create one."""


def _expected() -> dict[str, set[str]]:
    return {t.name: {c.name for c in t.columns} for t in tables.metadata.sorted_tables}


def _found_postgres(connection: Connection) -> dict[str, set[str]]:
    rows = connection.execute(
        text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = :schema AND table_name = ANY(:names)"
        ),
        {"schema": SCHEMA, "names": list(_expected())},
    )
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(str(table), set()).add(str(column))
    return found


def _found_sqlite(connection: Connection) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name in _expected():
        columns = {
            str(row[1]) for row in connection.exec_driver_sql(f'PRAGMA table_info("{name}")')
        }
        if columns:
            found[name] = columns
    return found


def missing_parts(connection: Connection) -> list[str]:
    """What attuned needs of Attune's schema and does not find: `table` or `table.column`."""
    if connection.dialect.name == "postgresql":
        found = _found_postgres(connection)
    else:
        found = _found_sqlite(connection)
    missing = []
    for table, columns in _expected().items():
        if table not in found:
            missing.append(table)
            continue
        missing.extend(f"{table}.{c}" for c in sorted(columns - found[table]))
    return missing


def create(connection: Connection) -> None:
    """Create Attune-shaped tables and the test views (SQLite, or PostgreSQL when asked)."""
    prefix = ""
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        prefix = f"{SCHEMA}."
    tables.metadata.create_all(connection)
    for view in VIEWS:
        connection.execute(text(view.format(schema=prefix)))


def ensure(connection: Connection, *, may_create: bool, where: str) -> bool:
    """Make sure Attune's tables are there; True when they were created now (only where
    `may_create`: SQLite, or PostgreSQL with `database.create_attune_tables`).

    Raises AttuneSchemaMissing when they are not and may not be created, or when only some
    of them are there (a database attuned must not half-build)."""
    missing = missing_parts(connection)
    if not missing:
        return False
    expected = set(_expected())
    nothing = expected.issubset(set(missing))
    if nothing and may_create:
        create(connection)
        return True
    if nothing:
        raise AttuneSchemaMissing(
            f"{where} has no Attune schema (schema {SCHEMA!r} with tables "
            f"{', '.join(sorted(expected))}). Point database.url at the database Attune's API "
            "uses, or run Attune's migrations on this one first; for a demo or a test without "
            "Attune, set database.create_attune_tables: true and attuned creates "
            "Attune-shaped tables itself."
        )
    raise AttuneSchemaMissing(
        f"{where}: Attune's schema lacks {_list(missing)}; attuned writes them and was checked "
        f"against {CHECKED_AGAINST}. Upgrade Attune's schema (run its migrations) and retry."
    )


def _list(items: Iterable[Any], limit: int = 12) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
