"""Caps on pack size for folders, archives and git trees, on real files, a real repository and
a real daemon: refused before anything is copied, with the file and the cap named."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pygit2
import pytest

from attuned.config import AttunedConfig
from attuned.errors import ValidationFailed
from attuned.pack.limits import MiB, PackLimits
from attuned.reconcile.daemon import Daemon
from attuned.reconcile.snapshot_copy import SnapshotChanged
from attuned.reconcile.snapshots import SnapshotStore
from attuned.reconcile.sources.git_export import PackExporter
from tests.conftest import PackFactory
from tests.opened import OPENED


def sparse(path: Path, size: int) -> Path:
    """A real file of `size` bytes that costs no disk (and no time) to make."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def refusal_of(store: SnapshotStore, pack_dir: Path) -> str:
    with pytest.raises(ValidationFailed) as caught:
        store.capture(pack_dir)
    [problem] = caught.value.problems
    return str(problem)


def leftovers(store: SnapshotStore) -> list[str]:
    return sorted(os.listdir(store.root)) if store.root.is_dir() else []


# --- folders -----------------------------------------------------------------------------


def test_a_300_mib_file_is_refused_unread_and_uncopied(
    tmp_path: Path, make_pack: PackFactory
) -> None:
    pack_dir = make_pack("hello", test_script=None)
    big = sparse(pack_dir / "data" / "dump.bin", 300 * MiB)
    store = SnapshotStore(tmp_path / "snapshots", racy_window_ns=0)
    with OPENED.under(pack_dir) as opened:
        rendered = refusal_of(store, pack_dir)
    assert rendered == (
        f"{big}: refused: {300 * MiB} bytes (300.0 MiB), more than the per-file cap of "
        f"{64 * MiB} bytes (64.0 MiB, pack_limits.max_file_mb)"
    )
    assert str(big) not in opened  # measured by lstat alone: not one byte read
    assert leftovers(store) == []  # nothing half-copied


def test_too_many_files_is_refused(tmp_path: Path, make_pack: PackFactory) -> None:
    files = {f"actions/a{n}.txt": "x\n" for n in range(5)}
    pack_dir = make_pack("hello", test_script=None, files=files)  # 6 files with pack.yaml
    store = SnapshotStore(tmp_path / "snapshots", limits=PackLimits(max_files=5))
    assert refusal_of(store, pack_dir) == (
        f"{pack_dir}: refused: more than 5 files (pack_limits.max_files); found 6 so far"
    )
    assert leftovers(store) == []


def test_too_many_bytes_in_all_is_refused(tmp_path: Path, make_pack: PackFactory) -> None:
    pack_dir = make_pack("hello", test_script=None)
    for name in ("a.bin", "b.bin", "c.bin"):
        sparse(pack_dir / name, 400_000)  # each under the per-file cap, together over
    limits = PackLimits(max_bytes=1 * MiB, max_file_bytes=1 * MiB)
    store = SnapshotStore(tmp_path / "snapshots", limits=limits)
    rendered = refusal_of(store, pack_dir)
    assert rendered.startswith(
        f"{pack_dir}: refused: more than {MiB} bytes (1.0 MiB, pack_limits.max_pack_mb) in all"
    )
    assert leftovers(store) == []


def test_a_pack_within_the_caps_is_taken(tmp_path: Path, make_pack: PackFactory) -> None:
    pack_dir = make_pack("hello", test_script=None, files={"actions/a.txt": "x" * 900})
    limits = PackLimits(max_bytes=4096, max_files=2, max_file_bytes=1000)
    store = SnapshotStore(tmp_path / "snapshots", limits=limits)
    pack, path = store.snapshot(pack_dir)
    assert (path / "actions" / "a.txt").read_text() == "x" * 900 and pack.ref == "hello"


def test_a_file_growing_past_the_cap_while_copied_is_refused(
    tmp_path: Path, make_pack: PackFactory
) -> None:
    pack_dir = make_pack("hello", test_script=None, files={"actions/lib.py": "x = 1\n"})
    lib = pack_dir / "actions" / "lib.py"

    def grow(directory: Path) -> None:  # after it was measured and read, before the copy
        with lib.open("ab") as handle:
            handle.truncate(5000)

    limits = PackLimits(max_file_bytes=4096)
    store = SnapshotStore(tmp_path / "snapshots", before_copy=grow, limits=limits)
    rendered = refusal_of(store, pack_dir)
    assert rendered == (
        f"{lib}: refused: 5000 bytes (0.0 MiB), more than the per-file cap of 4096 bytes "
        "(0.0 MiB, pack_limits.max_file_mb)"
    )
    assert leftovers(store) == []


def test_a_file_growing_within_the_cap_while_copied_is_a_change(
    tmp_path: Path, make_pack: PackFactory
) -> None:
    pack_dir = make_pack("hello", test_script=None, files={"actions/lib.py": "x = 1\n"})
    grown = []

    def grow(directory: Path) -> None:
        if not grown:
            grown.append(True)
            (directory / "actions" / "lib.py").write_text("x = 1\ny = 2\n")

    store = SnapshotStore(tmp_path / "snapshots", racy_window_ns=0, before_copy=grow)
    with pytest.raises(SnapshotChanged, match=r"actions/lib\.py grew to 12 bytes"):
        store.capture(pack_dir)
    assert leftovers(store) == []
    _, path = store.snapshot(pack_dir)  # read again: taken as it is now
    assert (path / "actions" / "lib.py").read_text() == "x = 1\ny = 2\n"


# --- archives ----------------------------------------------------------------------------


def test_an_archive_member_past_the_per_file_cap_is_refused(
    tmp_path: Path, make_pack: PackFactory
) -> None:
    from attuned.reconcile.sources.directory import DirectorySource

    pack_dir = make_pack("hello", test_script=None, files={"big.txt": "x" * 5000})
    folder = tmp_path / "packs.d"
    folder.mkdir()
    with tarfile.open(folder / "hello.tgz", "w:gz") as tar:
        tar.add(pack_dir, "hello")
    limits = PackLimits(max_file_bytes=4096)
    store = SnapshotStore(tmp_path / "snapshots", racy_window_ns=0, limits=limits)
    source = DirectorySource("local", folder, store, work_dir=tmp_path / "work")
    [invalid] = source.scan().invalid
    assert invalid.problems == (
        f"{folder / 'hello.tgz'}: hello/big.txt: declares 5000 bytes (0.0 MiB), more than the "
        "per-file cap of 4096 bytes (0.0 MiB, pack_limits.max_file_mb)",
    )
    store.limits = PackLimits()  # a reload raised the cap: the same archive is judged again
    [candidate] = source.scan().candidates
    assert candidate.ref == "hello"


# --- git -----------------------------------------------------------------------------------


def commit_tree(workdir: Path) -> tuple[pygit2.Repository, pygit2.Oid]:
    repo = pygit2.init_repository(str(workdir))
    repo.index.add_all()
    repo.index.write()
    tree = repo.index.write_tree()
    who = pygit2.Signature("t", "t@example.com")
    return repo, repo.create_commit("HEAD", who, who, "packs", tree, [])


def test_a_git_blob_past_the_cap_is_refused_before_checkout(
    tmp_path: Path, make_pack: PackFactory
) -> None:
    workdir = tmp_path / "repo"
    pack_dir = make_pack("hello", test_script=None, parent=workdir / "packs")
    (pack_dir / "data").mkdir()
    (pack_dir / "data" / "dump.bin").write_bytes(b"\1" * 5000)
    repo, commit = commit_tree(workdir)
    store = SnapshotStore(tmp_path / "snapshots", limits=PackLimits(max_file_bytes=4096))
    scratch = tmp_path / "work"
    exporter = PackExporter("origin", store, scratch)
    candidates, [invalid], _ = exporter.read(repo, commit, "packs")
    assert candidates == []
    assert invalid.problems == (
        "packs/hello/data/dump.bin: refused: 5000 bytes (0.0 MiB), more than the per-file cap "
        "of 4096 bytes (0.0 MiB, pack_limits.max_file_mb)",
    )
    assert list((scratch / "origin").iterdir()) == []  # nothing checked out, nothing left
    assert leftovers(store) == []

    store.limits = PackLimits()  # a reload raised the cap: the same commit is judged again
    [candidate], invalid_now, _ = exporter.read(repo, commit, "packs")
    assert invalid_now == [] and candidate.ref == "hello"


def test_a_git_pack_with_too_many_files_is_refused(tmp_path: Path, make_pack: PackFactory) -> None:
    workdir = tmp_path / "repo"
    files = {f"actions/a{n}.txt": "x\n" for n in range(5)}
    make_pack("hello", test_script=None, parent=workdir / "packs", files=files)
    repo, commit = commit_tree(workdir)
    store = SnapshotStore(tmp_path / "snapshots", limits=PackLimits(max_files=3))
    _, [invalid], _ = PackExporter("origin", store, tmp_path / "work").read(repo, commit, "packs")
    assert invalid.problems == (
        "packs/hello: refused: more than 3 files (pack_limits.max_files); found 4 so far",
    )


# --- the daemon, with the caps from its config -----------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> AttunedConfig:
    return AttunedConfig.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "status_file": str(tmp_path / "status.json"),
            "sources": [{"name": "local", "path": str(tmp_path / "packs.d"), "skip_tests": True}],
            "pack_limits": {"max_file_mb": 1, "max_files": 50},
        }
    )


@contextmanager
def running(config: AttunedConfig) -> Iterator[Daemon]:
    daemon = Daemon(config)
    daemon.snapshots.racy_window_ns = 0
    daemon.lock.acquire()
    try:
        daemon.sources.configure(config)
        yield daemon
    finally:
        daemon._close_registry()
        daemon.lock.release()


def one_pass(daemon: Daemon) -> None:
    daemon.reconcile_pass("test", full=True)
    assert daemon.phase == "idle", daemon.error


def test_the_configured_cap_refuses_an_upgrade_and_the_old_version_keeps_serving(
    config: AttunedConfig, make_pack: PackFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "packs.d"
    pack_dir = make_pack("hello", parent=folder, test_script=None, files={"a.txt": "one\n"})
    with running(config) as daemon:
        one_pass(daemon)
        assert daemon.packs["hello"].state == "active"
        served = Path(daemon.registry.store.active_path("hello") or "")  # type: ignore[union-attr]

        make_pack("hello", parent=folder, test_script=None, version="2.0.0")
        big = sparse(pack_dir / "dump.bin", 2 * MiB)  # over max_file_mb: 1, under the default
        one_pass(daemon)
        status = daemon.packs["hello"]
        assert status.state == "invalid" and status.version == "1.0.0"
        assert status.reason == (
            "serving 1.0.0; 'hello' in source 'local' is not a valid pack: "
            f"{big}: refused: {2 * MiB} bytes (2.0 MiB), more than the per-file cap of "
            f"{MiB} bytes (1.0 MiB, pack_limits.max_file_mb)"
        )
        assert daemon.registry.store.active_path("hello") == str(served)  # type: ignore[union-attr]
        assert (served / "a.txt").read_text() == "one\n"
        assert [p.name for p in daemon.snapshots.root.iterdir() if p.name.startswith(".")] == []

        os.unlink(big)  # back within the caps: the upgrade goes through
        one_pass(daemon)
        assert daemon.packs["hello"].state == "active"
        assert daemon.packs["hello"].version == "2.0.0"
