"""attuned verify-store: hash every served pack's files again and compare them with the
provenance recorded when that version was activated (a drift check an auditor runs without
the daemon). Read-only: no migration, no store repair.

Exit 0: every served pack matches its record; 1: a difference (each listed: a file missing,
extra or changed, something no pack may hold, no record at all); 2: the configuration, the
database or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attuned.cli.common import add_common, config_of, counted, print_json
from attuned.cli.verbs import help_of
from attuned.errors import AttunedError

if TYPE_CHECKING:  # SQLAlchemy: imported when the verb runs, not by `attuned --help`
    from attuned.store.database import Database
    from attuned.store.models import ActivationProvenance
    from attuned.store.packstore import PackStore


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("verify-store", help=help_of("verify-store"))
    add_common(parser)
    parser.set_defaults(run=run, error_exit=2)


@dataclass(frozen=True)
class Verdict:
    """One served pack against its newest provenance record."""

    ref: str
    served_dir: Path
    record_id: int | None
    version: str | None
    differences: list[str]

    def json(self) -> dict[str, Any]:
        return {
            "pack": self.ref,
            "version": self.version,
            "served_at": str(self.served_dir),
            "provenance_id": self.record_id,
            "matches": not self.differences,
            "differences": self.differences,
        }


def run(args: argparse.Namespace) -> int:
    """Exit 1 means a difference, so every error exits 2 (`error_exit`)."""
    from attuned.store.database import Database
    from attuned.store.packstore import PackStore

    config = config_of(args)
    store = PackStore(config.packs_path)
    served = served_dirs(store)  # a StoreError is an AttunedError: exit 2, one line
    _refuse_missing_sqlite(config.database_url)
    database = Database.from_config(config)
    try:
        database.check()  # read-only: a stale schema is refused, never migrated
        verdicts = verify(database, served)
    finally:
        database.dispose()
    differing = [v for v in verdicts if v.differences]
    if args.json:
        print_json({"matches": not differing, "packs": [v.json() for v in verdicts]})
    else:
        _print(verdicts, differing)
    return 1 if differing else 0


def _refuse_missing_sqlite(url: str) -> None:
    """Read-only: a SQLite file that is not there is not created (an empty one would be)."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise AttunedError(f"{path}: no such database (database.url in the config)")


def served_dirs(store: PackStore) -> dict[str, Path]:
    """ref -> the version directory its link in the store points at."""
    root = store.root
    try:
        names = sorted(e.name for e in os.scandir(root) if not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    found = {}
    for name in names:
        target = store.active_dir(name)
        if target is not None:
            found[name] = target
    return found


def verify(database: Database, served: dict[str, Path]) -> list[Verdict]:
    from attuned.store import provenance

    with database.read() as session:
        records = provenance.latest_of(session, sorted(served))
    verdicts = []
    for ref, served_dir in served.items():
        row = records.get(ref)
        if row is None:
            why = "no provenance record (activated before attuned recorded provenance?)"
            verdicts.append(Verdict(ref, served_dir, None, None, [why]))
            continue
        verdicts.append(
            Verdict(ref, served_dir, row.id, row.version, _differences(row, served_dir))
        )
    return verdicts


def _differences(row: ActivationProvenance, served_dir: Path) -> list[str]:
    from attuned.store import provenance

    if not served_dir.is_dir():
        return [f"served directory {served_dir} is missing"]
    drift = provenance.drift(served_dir, row.files)
    said = [
        *(f"changed: {rel}" for rel in drift.changed),
        *(f"missing: {rel}" for rel in drift.missing),
        *(f"extra: {rel}" for rel in drift.extra),
        *(f"refused: {what}" for what in drift.refused),
    ]
    if not said and drift.digest != row.digest:  # same bytes: an executable bit changed
        said.append(f"digest: served content is {drift.digest}, recorded {row.digest}")
    return said


def _print(verdicts: list[Verdict], differing: list[Verdict]) -> None:
    for verdict in verdicts:
        version = verdict.version or "?"
        if not verdict.differences:
            print(f"{verdict.ref} {version}: matches its provenance")
            continue
        print(
            f"{verdict.ref} {version}: {counted(len(verdict.differences), 'difference')} "
            f"in {verdict.served_dir}"
        )
        for difference in verdict.differences:
            print(f"  {difference}")
    if differing:
        print(f"{counted(len(differing), 'pack')} of {len(verdicts)} differ from their provenance")
    else:
        print(f"all {counted(len(verdicts), 'served pack')} match their provenance")
