"""What every verb shares: config loading, the registry, and printing (human or --json)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from attuned.cli.options import add_common as add_common  # re-exported for the verbs

if TYPE_CHECKING:  # SQLAlchemy and the registry cost 0.4 s, the config models 0.28 s:
    # imported by the verbs that use them (`status` and `trigger` use neither)
    from attuned.config import AttunedConfig
    from attuned.registry import Registry
    from attuned.store.models import TestRun
    from attuned.store.registered_packs import RegisteredPack
    from attuned.store.runs import RunRow

_COLOURS = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2"}
STATUS_COLOUR = {
    "passed": "green",
    "failed": "red",
    "error": "red",
    "partial": "yellow",
    "skipped": "yellow",
}


def config_of(args: argparse.Namespace) -> AttunedConfig:
    from attuned.config import load_config

    return load_config(args.config)


@contextmanager
def open_registry(
    args: argparse.Namespace, config: AttunedConfig | None = None
) -> Iterator[Registry]:
    """The registry of `config` (default: the one `args` names)."""
    from attuned.registry import Registry

    registry = Registry.from_config(config or config_of(args))
    try:
        yield registry
    finally:
        registry.close()


def colour(text: str, name: str) -> str:
    if not sys.stdout.isatty():
        return text
    return f"\033[{_COLOURS[name]}m{text}\033[0m"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 pack`, `2 packs`: a count with its noun agreeing."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def utc_iso(moment: datetime) -> str:
    """A time as every JSON output gives it: ISO 8601 in UTC, with `Z` (the database returns
    SQLite's times naive; attuned writes only UTC)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def pack_dict(record: RegisteredPack, last_status: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": record.id,
        "ref": record.ref,
        "label": record.label,
        "description": record.description,
        "version": record.version,
        "managed": record.managed,
        "digest": record.digest or None,
        "origin": record.origin,
        "source": record.source,
        "source_revision": record.source_revision,
        "system": record.system,
        "tags": record.tags,
        "runtime_deps": record.runtime_deps,
        "dependencies": record.dependencies,
        "meta": record.meta,
        "conf_schema": record.conf_schema,
        "config": record.config,
        "source_type": record.source_type,
        "source_url": record.source_url,
        "storage_path": record.storage_path,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }
    if last_status is not None:
        data["last_test_status"] = last_status
    return data


def execution_dict(record: TestRun | RunRow, *, full: bool = False) -> dict[str, Any]:
    """A stored run as `history`, `show` and `compare` print it in JSON."""
    data: dict[str, Any] = {
        "id": record.id,
        "pack_ref": record.pack_ref,
        "pack_version": record.pack_version,
        "pack_digest": record.pack_digest,
        "trigger_type": record.trigger_type,
        "status": record.status,
        "total_tests": record.total_tests,
        "passed": record.passed,
        "failed": record.failed,
        "skipped": record.skipped,
        "pass_rate": record.pass_rate,
        "duration_ms": record.duration_ms,
        "gate_passed": record.gate_passed,
        "gate_reason": record.gate_reason,
        "outcome": record.outcome,
        "source": record.source,
        "source_revision": record.source_revision,
        "regressions": list(record.regressions or []),
        "attune_execution_id": record.attune_execution_id,
        "execution_time": utc_iso(record.execution_time),
    }
    if full:
        data["result"] = record.result
    return data


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
