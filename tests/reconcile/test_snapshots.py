"""Snapshots on real files: content addressing, the stat cache, edits racing the copy, GC."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from attuned.errors import ValidationFailed
from attuned.pack.loader import load_pack
from attuned.reconcile.snapshots import (
    TMP_PREFIX,
    Outcome,
    SnapshotChanged,
    SnapshotStore,
)
from tests.conftest import PackFactory, write
from tests.opened import OPENED


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    # no racy window: these tests edit files within milliseconds of reading them on purpose
    return SnapshotStore(tmp_path / "state" / "snapshots", racy_window_ns=0)


def snapshot_dirs(store: SnapshotStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir()) if store.root.is_dir() else []


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_snapshot_copies_exactly_the_pack_under_its_digest(
    store: SnapshotStore, make_pack: PackFactory
) -> None:
    source = make_pack("hello", files={"actions/lib.py": "x = 1\n"})
    write(source / "__pycache__" / "lib.cpython-311.pyc", "not content")
    pack, path = store.snapshot(source)
    expected = load_pack(source)
    assert path == store.root / expected.digest
    assert pack.digest == expected.digest
    assert pack.path == path, "the Pack is the snapshot's, not the user's folder"
    assert pack.ref == "hello" and pack.version == "1.0.0"
    assert tree(path) == {f.relpath: (source / f.relpath).read_bytes() for f in expected.files}
    assert not (path / "__pycache__").exists()
    assert os.access(path / "tests" / "run_tests.sh", os.X_OK)
    assert snapshot_dirs(store) == [expected.digest]


def test_an_unchanged_pack_is_not_read_again(store: SnapshotStore, make_pack: PackFactory) -> None:
    source = make_pack("hello", files={"actions/lib.py": "x = 1\n" * 1000})
    first = store.capture(source)
    assert first.outcome is Outcome.MADE
    hashed = store.bytes_hashed
    assert hashed >= 2 * 6000  # the source and the copy were both read
    with OPENED.under(source) as opened:
        again = store.capture(source)
    assert again.outcome is Outcome.CACHED
    assert again.pack is None, "a cache hit reads nothing: it has only the summary"
    assert (again.path, again.summary.digest) == (first.path, first.summary.digest)
    assert store.bytes_hashed == hashed
    assert opened == [], "not even pack.yaml was opened"
    with OPENED.under(source) as opened:  # the recorder does see reads when there are some
        (source / "actions" / "lib.py").write_text("x = 2\n")
        assert store.capture(source).outcome is Outcome.MADE
    assert str(source / "pack.yaml") in opened


def test_editing_a_file_changes_the_digest_and_keeps_the_old_snapshot(
    store: SnapshotStore, make_pack: PackFactory
) -> None:
    source = make_pack("hello", files={"actions/lib.py": "x = 1\n"})
    _, old = store.snapshot(source)
    before = tree(old)
    (source / "actions" / "lib.py").write_text("x = 22\n")
    _, new = store.snapshot(source)
    assert new != old
    assert tree(new)["actions/lib.py"] == b"x = 22\n"
    assert tree(old) == before, "a snapshot never changes once named"
    assert snapshot_dirs(store) == sorted([old.name, new.name])


def test_a_same_size_edit_that_restores_mtime_is_still_seen(
    store: SnapshotStore, make_pack: PackFactory
) -> None:
    """Size, mtime and inode can all be kept (`cp -p`, `touch -r`); the ctime cannot."""
    source = make_pack("hello", files={"actions/lib.py": "x = 1\n"})
    lib = source / "actions" / "lib.py"
    first = store.capture(source)
    info = lib.stat()
    with lib.open("r+") as handle:  # same inode, same size
        handle.write("x = 9\n")
    os.utime(lib, ns=(info.st_atime_ns, info.st_mtime_ns))
    after = lib.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        info.st_size,
        info.st_mtime_ns,
        info.st_ino,
    )
    second = store.capture(source)
    assert second.outcome is Outcome.MADE
    assert second.summary.digest != first.summary.digest


def test_recently_changed_files_are_read_again_until_they_settle(
    tmp_path: Path, make_pack: PackFactory
) -> None:
    store = SnapshotStore(tmp_path / "snaps", racy_window_ns=300_000_000)
    source = make_pack("hello")
    outcomes = [store.capture(source).outcome, store.capture(source).outcome]
    assert outcomes == [Outcome.MADE, Outcome.REUSED], "too fresh to trust its timestamps"
    time.sleep(0.35)
    assert store.capture(source).outcome is Outcome.REUSED
    assert store.capture(source).outcome is Outcome.CACHED


def test_identical_content_shares_one_snapshot(
    store: SnapshotStore, make_pack: PackFactory, tmp_path: Path
) -> None:
    one = make_pack("hello", parent=tmp_path / "a")
    two = make_pack("hello", parent=tmp_path / "b")
    first = store.capture(one)
    second = store.capture(two)
    assert (first.outcome, second.outcome) == (Outcome.MADE, Outcome.REUSED)
    assert first.path == second.path
    assert len(snapshot_dirs(store)) == 1


def test_invalid_pack_names_the_users_files(store: SnapshotStore, make_pack: PackFactory) -> None:
    source = make_pack("hello", version="one")
    with pytest.raises(ValidationFailed) as caught:
        store.snapshot(source)
    [problem] = caught.value.problems
    assert problem.file == source / "pack.yaml"
    assert str(problem).startswith(f"{source / 'pack.yaml'}:4: version: ")
    assert snapshot_dirs(store) == []


def test_warnings_name_the_users_files(store: SnapshotStore, make_pack: PackFactory) -> None:
    source = make_pack("hello", future_key="kept")
    pack, _ = store.snapshot(source)
    assert [(w.file, w.field) for w in pack.warnings] == [(source / "pack.yaml", "future_key")]
    pack, _ = store.snapshot(source)  # from the cache: the same
    assert [w.file for w in pack.warnings] == [source / "pack.yaml"]


def test_a_pack_edited_during_the_copy_is_refused_then_taken_next_time(
    tmp_path: Path, make_pack: PackFactory
) -> None:
    source = make_pack("hello", files={"actions/lib.py": "x = 1\n"})
    edits = ["x = 2  # saved while attuned was copying\n"]

    def edit_once(directory: Path) -> None:
        if edits:
            (directory / "actions" / "lib.py").write_text(edits.pop())

    store = SnapshotStore(tmp_path / "snaps", racy_window_ns=0, before_copy=edit_once)
    with pytest.raises(SnapshotChanged, match="files changed while being copied"):
        store.snapshot(source)
    assert snapshot_dirs(store) == [], "neither the old nor a mixed copy got a name"
    pack, path = store.snapshot(source)
    assert (path / "actions" / "lib.py").read_text() == "x = 2  # saved while attuned was copying\n"
    assert pack.digest == load_pack(source).digest


def test_a_file_deleted_during_the_copy(tmp_path: Path, make_pack: PackFactory) -> None:
    source = make_pack("hello", files={"actions/lib.py": "x = 1\n"})
    store = SnapshotStore(
        tmp_path / "snaps", before_copy=lambda d: (d / "actions" / "lib.py").unlink()
    )
    with pytest.raises(SnapshotChanged, match="vanished while being copied"):
        store.snapshot(source)
    assert snapshot_dirs(store) == []


def test_the_copy_is_verified_by_its_digest_not_read_back(
    store: SnapshotStore, make_pack: PackFactory
) -> None:
    """Each file of a new snapshot is opened once, to be written: the digest of the bytes
    written is the check (the source's digest covers the very bytes it validated)."""
    source = make_pack("hello", files={"actions/lib.py": "x = 1\n"})
    with OPENED.under(store.root) as opened:
        taken = store.capture(source)
    assert taken.outcome is Outcome.MADE
    files = [f.relpath for f in load_pack(taken.path).files]
    assert len(opened) == len(files) and len(set(opened)) == len(files), opened
    assert taken.pack.files == load_pack(source).files
    assert taken.pack.warnings == load_pack(source).warnings


@pytest.mark.parametrize("swap", ["symlink", "fifo"])
def test_a_symlink_or_fifo_swapped_in_during_the_copy_is_not_followed(
    tmp_path: Path, make_pack: PackFactory, swap: str
) -> None:
    source = make_pack("hello", files={"actions/lib.py": "x = 1\n"})
    secret = tmp_path / "secret.py"
    secret.write_text("x = 1\n")  # the same bytes: only not following it tells

    def swap_in(directory: Path) -> None:
        (directory / "actions" / "lib.py").unlink()
        if swap == "symlink":
            os.symlink(secret, directory / "actions" / "lib.py")
        else:
            os.mkfifo(directory / "actions" / "lib.py")

    store = SnapshotStore(tmp_path / "snaps", racy_window_ns=0, before_copy=swap_in)
    with pytest.raises(SnapshotChanged, match="a file changed while being copied"):
        store.snapshot(source)
    assert snapshot_dirs(store) == []


def test_a_snapshot_with_a_file_added_is_replaced(
    store: SnapshotStore, make_pack: PackFactory
) -> None:
    source = make_pack("hello")
    _, path = store.snapshot(source)
    write(path / "actions" / "extra.yaml", "ref: hello.extra\n")
    taken = SnapshotStore(store.root, racy_window_ns=0).capture(source)
    assert (taken.outcome, taken.path) == (Outcome.MADE, path)
    assert not (path / "actions" / "extra.yaml").exists()


def test_a_damaged_snapshot_is_replaced(
    store: SnapshotStore, make_pack: PackFactory, tmp_path: Path
) -> None:
    source = make_pack("hello")
    _, path = store.snapshot(source)
    (path / "pack.yaml").write_text("ref: hello\n")  # say, a power cut mid-write
    fresh = SnapshotStore(store.root, racy_window_ns=0)  # a restarted daemon: no cache
    taken = fresh.capture(source)
    assert taken.outcome is Outcome.MADE
    assert taken.path == path
    assert (path / "pack.yaml").read_bytes() == (source / "pack.yaml").read_bytes()
    assert snapshot_dirs(fresh) == [path.name]


def test_collect_garbage(store: SnapshotStore, make_pack: PackFactory, tmp_path: Path) -> None:
    keep = store.capture(make_pack("hello", parent=tmp_path / "a"))
    drop_source = make_pack("other", parent=tmp_path / "b")
    drop = store.capture(drop_source)
    leftover = store.root / f"{TMP_PREFIX}crashed"
    leftover.mkdir()
    foreign = store.root / "README"
    foreign.write_text("not a snapshot; not ours to delete")
    removed = store.collect_garbage({keep.summary.digest})
    assert sorted(removed) == sorted([drop.path, leftover])
    assert snapshot_dirs(store) == sorted(["README", keep.summary.digest])
    # the stat cache does not hand out the deleted snapshot
    again = store.capture(drop_source)
    assert again.outcome is Outcome.MADE and again.path.is_dir()


def test_collect_garbage_without_a_root(tmp_path: Path) -> None:
    assert SnapshotStore(tmp_path / "never-made").collect_garbage(set()) == []
