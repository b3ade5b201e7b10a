"""The stat caches survive a restart, and a saved cache can never hide a change.

Each test runs a real daemon pass in-process over a real folder and SQLite file, stops it
(saving `statcache.json`), changes something while "down", and runs a fresh daemon over the
same state directory, as a restart does.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from attuned.config import AttunedConfig
from attuned.reconcile.daemon import Daemon
from attuned.reconcile.statcache import FILE_NAME
from tests.conftest import PackFactory
from tests.opened import OPENED


@pytest.fixture
def config(tmp_path: Path) -> AttunedConfig:
    return AttunedConfig.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "status_file": str(tmp_path / "status.json"),
            "sources": [{"name": "local", "path": str(tmp_path / "packs.d"), "skip_tests": True}],
        }
    )


@contextmanager
def running(config: AttunedConfig) -> Iterator[Daemon]:
    """A daemon between its start and a clean stop (which saves the stat cache)."""
    daemon = Daemon(config)
    daemon.snapshots.racy_window_ns = 0  # these tests change files within milliseconds
    daemon.drift.racy_window_ns = 0
    daemon.lock.acquire()
    try:
        daemon.sources.configure(config)
        yield daemon
        daemon._stat_cache.save_if_due(now=True)
    finally:
        daemon._close_registry()
        daemon.lock.release()


def one_pass(daemon: Daemon) -> dict[str, int]:
    daemon.reconcile_pass("test", full=True)
    assert daemon.phase == "idle", daemon.error
    assert daemon.last_reconcile is not None
    return dict(daemon.last_reconcile.counts)


def served_versions(daemon: Daemon) -> dict[str, str]:
    return {ref: p.version for ref, p in daemon.packs.items() if p.state == "active"}


def three_packs(config: AttunedConfig, make_pack: PackFactory) -> Path:
    folder = config.sources[0].path  # type: ignore[union-attr]
    for ref in ("alpha", "bravo", "charlie"):
        make_pack(ref, parent=folder, test_script=None, files={"actions/lib.py": "x = 1\n"})
    return folder


def test_a_restart_reads_no_pack_again(config: AttunedConfig, make_pack: PackFactory) -> None:
    folder = three_packs(config, make_pack)
    with running(config) as daemon:
        one_pass(daemon)
        assert served_versions(daemon) == dict.fromkeys(("alpha", "bravo", "charlie"), "1.0.0")
    saved = json.loads((config.state_dir / FILE_NAME).read_text())
    assert sorted(Path(s).name for s in saved["snapshots"]) == ["alpha", "bravo", "charlie"]
    assert sorted(saved["drift"]) == ["alpha", "bravo", "charlie"]

    with running(config) as daemon, capture_logs() as logs:
        with OPENED.under(folder, config.snapshots_path, config.packs_path) as opened:
            one_pass(daemon)
        assert opened == [], "a restart with nothing changed opens no pack file"
        assert served_versions(daemon) == dict.fromkeys(("alpha", "bravo", "charlie"), "1.0.0")
    loaded = [e for e in logs if e["event"] == "statcache.loaded"]
    assert [(e["snapshots"], e["served"]) for e in loaded] == [(3, 3)]


def test_a_change_made_while_down_is_seen_even_with_the_same_size_and_mtime(
    config: AttunedConfig, make_pack: PackFactory
) -> None:
    folder = three_packs(config, make_pack)
    with running(config) as daemon:
        one_pass(daemon)
        before = daemon.packs["bravo"].digest
    lib = folder / "bravo" / "actions" / "lib.py"
    info = lib.stat()
    with lib.open("r+") as handle:  # same inode, same size, mtime put back: only ctime moves
        handle.write("x = 2\n")
    os.utime(lib, ns=(info.st_atime_ns, info.st_mtime_ns))
    with running(config) as daemon:
        counts = one_pass(daemon)
        assert daemon.packs["bravo"].digest != before
        assert (daemon.config.packs_path / "bravo" / "actions" / "lib.py").read_text() == "x = 2\n"
    assert counts.get("reinstall") == 1, counts


def test_a_snapshot_damaged_while_down_is_not_trusted(
    config: AttunedConfig, make_pack: PackFactory
) -> None:
    three_packs(config, make_pack)
    with running(config) as daemon:
        one_pass(daemon)
        digest = daemon.packs["alpha"].digest
    assert digest is not None
    damaged = config.snapshots_path / digest / "actions" / "lib.py"
    damaged.write_text("")  # a power cut after the cache was written, before the data
    with running(config) as daemon:
        one_pass(daemon)
        assert daemon.packs["alpha"].digest == digest, "same content: same pack"
    assert damaged.read_text() == "x = 1\n", "the snapshot was verified and made again"


def test_a_served_pack_edited_while_down_is_repaired_at_the_first_pass(
    config: AttunedConfig, make_pack: PackFactory
) -> None:
    three_packs(config, make_pack)
    with running(config) as daemon:
        one_pass(daemon)
    served = config.packs_path / "charlie" / "actions" / "lib.py"
    served.write_text("x = 666\n")
    with running(config) as daemon, capture_logs() as logs:
        one_pass(daemon)
    assert served.read_text() == "x = 1\n"
    assert [e["pack"] for e in logs if e["event"] == "pack.drift.repaired"] == ["charlie"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"format": 99, "snapshots": {}, "drift": {}}', b"\x00\xff" * 10],
)
def test_a_damaged_or_foreign_cache_file_is_ignored(
    config: AttunedConfig, make_pack: PackFactory, content: bytes
) -> None:
    three_packs(config, make_pack)
    with running(config) as daemon:
        one_pass(daemon)
    (config.state_dir / FILE_NAME).write_bytes(content)
    with running(config) as daemon, capture_logs() as logs:
        counts = one_pass(daemon)
        assert served_versions(daemon) == dict.fromkeys(("alpha", "bravo", "charlie"), "1.0.0")
    assert "statcache.ignored" in [e["event"] for e in logs]
    assert counts == {"state_active": 3}, "nothing re-registered: the digests are the same"
    saved = json.loads((config.state_dir / FILE_NAME).read_text())
    assert len(saved["snapshots"]) == 3, "the next stop writes a good file again"


def test_entries_of_a_cache_for_other_files_are_each_refused(
    config: AttunedConfig, make_pack: PackFactory
) -> None:
    """A cache copied from another machine (or a restored backup) names the same paths but
    other inodes: every entry misses, and the packs are read, not trusted."""
    folder = three_packs(config, make_pack)
    with running(config) as daemon:
        one_pass(daemon)
    for ref in ("alpha", "bravo", "charlie"):  # the same content, as new files
        shutil.rmtree(folder / ref)
        make_pack(ref, parent=folder, test_script=None, files={"actions/lib.py": "x = 1\n"})
    with running(config) as daemon:
        with OPENED.under(folder) as opened:
            one_pass(daemon)
        assert served_versions(daemon) == dict.fromkeys(("alpha", "bravo", "charlie"), "1.0.0")
    assert any(p.endswith("alpha/pack.yaml") for p in opened), "re-read, not trusted"
