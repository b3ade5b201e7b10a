"""The drift check: stats only while nothing changed; a tampered served pack is restored."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from attuned.reconcile.drift import DriftCheck
from attuned.reconcile.snapshots import SnapshotStore
from attuned.registry import Registry
from attuned.report.log import ConditionLog
from attuned.store.database import Database
from attuned.store.packstore import PackStore
from tests.conftest import PackFactory


def test_unchanged_packs_are_not_reread_and_tampering_is_repaired(
    database: Database, tmp_path: Path, make_pack: PackFactory
) -> None:
    snapshots = SnapshotStore(tmp_path / "snapshots", racy_window_ns=0)
    registry = Registry(database, PackStore(tmp_path / "packs"))
    _pack, snapshot = snapshots.snapshot(make_pack(files={"README.md": "original\n"}))
    registry.register(snapshot, skip_tests=True)
    check = DriftCheck(snapshots, ConditionLog(), racy_window_ns=0)

    assert check.check(registry) == [] and check.bytes_hashed > 0  # first look: verify once
    read = check.bytes_hashed
    assert check.check(registry) == [] and check.bytes_hashed == read  # stats only

    served = tmp_path / "packs/hello/README.md"
    served.write_text("tampered\n")
    with capture_logs() as logs:
        assert check.check(registry) == ["hello"]
    assert served.read_text() == "original\n"
    assert [e["event"] for e in logs] == ["pack.drift.repaired"]
    assert check.check(registry) == []
