"""The watched-folder source on real folders, packs and archives."""

from __future__ import annotations

import os
import shutil
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from attuned.pack.limits import PackLimits
from attuned.pack.loader import load_pack
from attuned.reconcile.model import Candidate, Requirement
from attuned.reconcile.snapshots import SnapshotStore
from attuned.reconcile.sources.base import ScanResult
from attuned.reconcile.sources.directory import FOLDER_ITSELF, DirectorySource
from tests.conftest import PackFactory, write


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "packs.d"
    path.mkdir()
    return path


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "state" / "snapshots", racy_window_ns=0)


@pytest.fixture
def source(folder: Path, store: SnapshotStore, tmp_path: Path) -> DirectorySource:
    return DirectorySource("local", folder, store, work_dir=tmp_path / "state" / "work")


def by_entry(result: ScanResult) -> dict[str, Candidate]:
    return {c.entry: c for c in result.candidates}


def tgz(archive: Path, pack_dir: Path, arcname: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(pack_dir, arcname=arcname)
    return archive


def zipped(archive: Path, pack_dir: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(pack_dir.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(pack_dir).as_posix())
    return archive


# --- the folder itself -------------------------------------------------------------------


def test_missing_folder_is_unreadable_not_empty(store: SnapshotStore, tmp_path: Path) -> None:
    source = DirectorySource(
        "local", tmp_path / "gone", store, prune=True, work_dir=tmp_path / "work"
    )
    result = source.scan()
    assert not result.state.readable
    assert result.state.prune is True
    assert result.state.error == f"{tmp_path / 'gone'} does not exist"
    assert result.candidates == () and result.invalid == ()


def test_a_file_where_the_folder_should_be_is_unreadable(
    store: SnapshotStore, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("not a folder")
    result = DirectorySource("local", tmp_path / "file", store, work_dir=tmp_path / "w").scan()
    assert not result.state.readable
    assert result.state.error == f"{tmp_path / 'file'} is not a directory"


def test_a_folder_that_empties_onto_another_device_is_unreadable(
    store: SnapshotStore, tmp_path: Path, make_pack: PackFactory
) -> None:
    """A mount that went away: the folder now shows the empty directory under it."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than tmp_path")
    mounted = tmp_path / "disk"
    make_pack("hello", parent=mounted)
    empty_mount_point = Path(os.path.realpath(shm)) / f"attuned-test-{os.getpid()}-{id(store)}"
    empty_mount_point.mkdir()
    try:
        watched = tmp_path / "watched"
        watched.symlink_to(mounted)
        source = DirectorySource("local", watched, store, work_dir=tmp_path / "w")
        assert [c.ref for c in source.scan().candidates] == ["hello"]
        watched.unlink()
        watched.symlink_to(empty_mount_point)
        result = source.scan()
        assert not result.state.readable
        assert "is a mount missing?" in (result.state.error or "")
        # an operator emptying the folder on its own device is another matter
        watched.unlink()
        watched.symlink_to(mounted)
        shutil.rmtree(mounted / "hello")
        emptied = source.scan()
        assert emptied.state.readable and emptied.candidates == ()
    finally:
        empty_mount_point.rmdir()


def test_a_partial_scan_after_the_folder_was_deleted_prunes_nothing(
    source: DirectorySource, folder: Path, make_pack: PackFactory
) -> None:
    """`rm -rf packs.d`: inotify names every pack as deleted; the pass for those events must
    find the folder gone, not the packs (it pruned them all before)."""
    make_pack("hello", parent=folder)
    make_pack("core", parent=folder)
    assert source.scan().state.readable
    assert not source.root_moved()
    shutil.rmtree(folder)
    assert source.root_moved()
    partial = source.scan(only={"hello", "core"})
    assert not partial.state.readable
    assert partial.state.error == f"{folder} does not exist"
    assert not source.root_moved()  # known to be gone: no news until it is back


def test_a_folder_moved_away_is_unreadable_and_read_again_when_back(
    source: DirectorySource, folder: Path, make_pack: PackFactory, tmp_path: Path
) -> None:
    make_pack("hello", parent=folder)
    assert [c.ref for c in source.scan().candidates] == ["hello"]
    folder.rename(tmp_path / "elsewhere")
    assert source.root_moved()
    assert not source.scan(only={"hello"}).state.readable
    (tmp_path / "elsewhere").rename(folder)
    assert source.root_moved()  # back: the daemon reads it at once
    back = source.scan(only=set())
    assert back.state.readable and [c.ref for c in back.candidates] == ["hello"]


def test_an_empty_folder_made_again_in_place_of_the_one_with_packs_is_unreadable(
    source: DirectorySource, folder: Path, make_pack: PackFactory
) -> None:
    """Deleted and created again (a deploy script's `rm -rf && mkdir`): empty is not a
    decision to prune everything; a pack dropped in it, or a restart, is."""
    make_pack("hello", parent=folder)
    assert source.scan().state.readable
    shutil.rmtree(folder)
    folder.mkdir()  # often with the same inode number: only the watcher's event tells
    result = source.scan(only={FOLDER_ITSELF, "hello"})
    assert not result.state.readable
    assert "is not the folder that held the packs" in (result.state.error or "")
    assert not source.root_moved()  # said once, not read again every tick
    assert not source.scan(only={"x"}).state.readable
    make_pack("core", parent=folder)
    dropped = source.scan(only={"core"})
    assert dropped.state.readable and [c.ref for c in dropped.candidates] == ["core"]


def test_a_folder_emptied_in_place_is_readable_and_empty(
    source: DirectorySource, folder: Path, make_pack: PackFactory
) -> None:
    make_pack("hello", parent=folder)
    assert source.scan().candidates
    shutil.rmtree(folder / "hello")
    assert not source.root_moved()
    emptied = source.scan(only={"hello"})
    assert emptied.state.readable and emptied.candidates == ()


def test_prune_is_passed_through(folder: Path, store: SnapshotStore, tmp_path: Path) -> None:
    keep = DirectorySource("local", folder, store, prune=False, work_dir=tmp_path / "w")
    state = keep.scan().state
    assert state.readable and state.prune is False and state.error is None


# --- entries -----------------------------------------------------------------------------


def test_pack_directories_become_candidates(
    source: DirectorySource, folder: Path, store: SnapshotStore, make_pack: PackFactory
) -> None:
    make_pack(
        "hello",
        parent=folder,
        version="1.2.0",
        dependencies=["core>=1.0.0", {"ref": "dns", "version": "^1"}, "http"],
    )
    make_pack("core", parent=folder)
    result = source.scan()
    assert result.state.readable and result.invalid == ()
    assert [c.entry for c in result.candidates] == ["core", "hello"]
    hello = by_entry(result)["hello"]
    expected = load_pack(folder / "hello")
    assert hello.ref == "hello" and hello.version == "1.2.0"
    assert hello.digest == expected.digest
    assert hello.source == "local"
    assert hello.snapshot == store.root / expected.digest
    assert hello.requires == (
        Requirement("core", ">=1.0.0"),
        Requirement("dns", "^1"),
        Requirement("http", "*"),
    )
    assert result.stats == {
        "entries": 2,
        "candidates": 2,
        "invalid": 0,
        "skipped": 0,
        "snapshots_made": 2,
        "snapshots_reused": 0,
        "cache_hits": 0,
    }


def test_an_unchanged_folder_is_not_read_again(
    source: DirectorySource, folder: Path, store: SnapshotStore, make_pack: PackFactory
) -> None:
    make_pack("hello", parent=folder)
    first = source.scan()
    hashed = store.bytes_hashed
    second = source.scan()
    assert second.candidates == first.candidates
    assert second.stats["cache_hits"] == 1 and second.stats["snapshots_made"] == 0
    assert store.bytes_hashed == hashed
    write(folder / "hello" / "actions" / "new.sh", "echo new\n")
    third = source.scan()
    assert third.stats["snapshots_made"] == 1
    assert by_entry(third)["hello"].digest != by_entry(first)["hello"].digest
    assert store.bytes_hashed > hashed


def test_a_scan_of_changed_entries_reads_only_them(
    source: DirectorySource, folder: Path, make_pack: PackFactory
) -> None:
    """inotify names what changed: a pass for a drop must not stat 1,000 other packs (the
    benchmark's scan of 1,000 served packs took 196 ms per drop). The full pass re-reads
    everything, so an edit nobody announced waits for it."""
    make_pack("hello", parent=folder)
    make_pack("core", parent=folder)
    make_pack("gone", parent=folder)
    first = by_entry(source.scan())
    make_pack("fresh", parent=folder)
    write(folder / "core" / "actions" / "edit.sh", "echo unannounced\n")
    shutil.rmtree(folder / "gone")
    partial = source.scan(only={"fresh", "gone"})
    assert partial.stats["entries"] == 3  # hello, core, fresh
    assert partial.stats["snapshots_made"] == 1 and partial.stats["cache_hits"] == 0
    assert [c.entry for c in partial.candidates] == ["core", "fresh", "hello"]
    assert by_entry(partial)["core"].digest == first["core"].digest  # not read again
    assert by_entry(partial)["hello"] == first["hello"]
    full = by_entry(source.scan())
    assert full["core"].digest != first["core"].digest
    assert set(full) == {"core", "fresh", "hello"}


def test_a_partial_scan_before_any_full_scan_is_a_full_scan(
    source: DirectorySource, folder: Path, make_pack: PackFactory
) -> None:
    make_pack("hello", parent=folder)
    make_pack("core", parent=folder)
    assert [c.entry for c in source.scan(only={"hello"}).candidates] == ["core", "hello"]


def test_the_candidate_is_the_snapshot_not_the_folder(
    source: DirectorySource, folder: Path, make_pack: PackFactory
) -> None:
    make_pack("hello", parent=folder, files={"actions/lib.py": "x = 1\n"})
    [candidate] = source.scan().candidates
    (folder / "hello" / "actions" / "lib.py").write_text("x = 'still editing'\n")
    assert (candidate.snapshot / "actions" / "lib.py").read_text() == "x = 1\n"
    assert load_pack(candidate.snapshot).digest == candidate.digest


def test_ignored_names_and_folders_that_are_not_packs(
    source: DirectorySource, folder: Path, make_pack: PackFactory
) -> None:
    for name in (".hidden", "copying.tmp", "download.part", ".x.tgz"):
        make_pack("hello", parent=folder / "staging")
        (folder / "staging" / "hello").rename(folder / name)
    shutil.rmtree(folder / "staging")
    (folder / "notes").mkdir()
    (folder / "README.txt").write_text("drop packs here")
    result = source.scan()
    assert result.candidates == () and result.invalid == ()
    assert result.stats["entries"] == 2  # notes/ and README.txt; the ignored are not entries
    assert result.stats["skipped"] == 2


def test_atomic_drop_by_rename(
    source: DirectorySource, folder: Path, make_pack: PackFactory, tmp_path: Path
) -> None:
    origin = make_pack("hello", parent=tmp_path / "elsewhere")
    shutil.copytree(origin, folder / ".hello")  # cp -r hello .hello
    assert source.scan().candidates == ()
    (folder / ".hello").rename(folder / "hello")  # mv .hello hello
    [candidate] = source.scan().candidates
    assert (candidate.entry, candidate.ref) == ("hello", "hello")


def test_a_symlinked_entry_is_followed_and_switches_versions_atomically(
    source: DirectorySource, folder: Path, make_pack: PackFactory
) -> None:
    old = make_pack("hello", parent=folder / ".v1")
    new = make_pack("hello", parent=folder / ".v2", version="1.1.0")
    (folder / ".link").symlink_to(old.relative_to(folder))
    (folder / ".link").rename(folder / "hello")
    [first] = source.scan().candidates
    assert (first.entry, first.version) == ("hello", "1.0.0")
    (folder / ".link").symlink_to(new.relative_to(folder))
    os.replace(folder / ".link", folder / "hello")  # mv -T .link hello
    [second] = source.scan().candidates
    assert (second.entry, second.version) == ("hello", "1.1.0")
    assert first.snapshot.is_dir() and not first.snapshot.is_symlink()
    assert second.snapshot.parent == first.snapshot.parent


def test_invalid_pack_keeps_its_ref_hint_and_names_the_users_file(
    source: DirectorySource, folder: Path, make_pack: PackFactory
) -> None:
    make_pack("hello", parent=folder, version="one")
    make_pack("good", parent=folder)
    result = source.scan()
    assert [c.ref for c in result.candidates] == ["good"]
    [invalid] = result.invalid
    assert (invalid.source, invalid.entry, invalid.digest) == ("local", "hello", "")
    assert invalid.ref_hint == "hello"
    [problem] = invalid.problems
    assert problem.startswith(f"{folder / 'hello' / 'pack.yaml'}:4: version: ")
    assert result.stats["invalid"] == 1 and result.stats["candidates"] == 1


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("ref: hello\nlabel: [unclosed\n", "hello"),  # broken YAML: the ref line still tells
        ("ref: 12\nlabel: x\n", None),  # a mapping whose ref is not a string
        ("- just\n- a list\n", None),
    ],
)
def test_ref_hint_of_a_broken_manifest(
    source: DirectorySource, folder: Path, text: str, hint: str | None
) -> None:
    write(folder / "broken" / "pack.yaml", text)
    [invalid] = source.scan().invalid
    assert invalid.ref_hint == hint
    assert invalid.problems and all(
        p.startswith(str(folder / "broken" / "pack.yaml")) for p in invalid.problems
    )


def test_a_pack_that_breaks_keeps_the_ref_it_had(
    source: DirectorySource, folder: Path, make_pack: PackFactory
) -> None:
    make_pack("hello", parent=folder)
    assert [c.ref for c in source.scan().candidates] == ["hello"]
    (folder / "hello" / "pack.yaml").write_text(":\n  - {[ not yaml")
    [invalid] = source.scan().invalid
    assert invalid.ref_hint == "hello"


def test_a_file_name_that_is_not_utf8_makes_the_pack_invalid_not_the_scan_crash(
    source: DirectorySource, folder: Path, make_pack: PackFactory
) -> None:
    make_pack("hello", parent=folder)
    make_pack("good", parent=folder)
    with open(os.fsencode(folder / "hello") + b"/caf\xe9.txt", "wb") as handle:
        handle.write(b"latin-1 name")
    result = source.scan()
    assert [c.ref for c in result.candidates] == ["good"]
    [invalid] = result.invalid
    assert (invalid.entry, invalid.ref_hint) == ("hello", "hello")
    assert invalid.problems == (f"{folder / 'hello'}: a file name is not UTF-8 text; rename it",)


def test_a_pack_saved_during_the_copy_is_read_again_once(
    folder: Path, make_pack: PackFactory, tmp_path: Path
) -> None:
    make_pack("hello", parent=folder, files={"actions/lib.py": "x = 1\n"})
    saves = ["x = 2\n"]

    def save(directory: Path) -> None:
        if saves:
            (directory / "actions" / "lib.py").write_text(saves.pop())

    store = SnapshotStore(tmp_path / "snaps", racy_window_ns=0, before_copy=save)
    source = DirectorySource("local", folder, store, work_dir=tmp_path / "w")
    [candidate] = source.scan().candidates
    assert (candidate.snapshot / "actions" / "lib.py").read_text() == "x = 2\n"
    assert candidate.digest == load_pack(folder / "hello").digest


def test_a_pack_that_keeps_changing_is_invalid_for_now(
    folder: Path, make_pack: PackFactory, tmp_path: Path
) -> None:
    make_pack("hello", parent=folder, files={"actions/lib.py": "x = 1\n"})
    counter = iter(range(100))

    def save(directory: Path) -> None:
        (directory / "actions" / "lib.py").write_text(f"x = {next(counter)}\n")

    store = SnapshotStore(tmp_path / "snaps", racy_window_ns=0, before_copy=save)
    result = DirectorySource("local", folder, store, work_dir=tmp_path / "w").scan()
    assert result.candidates == ()
    [invalid] = result.invalid
    assert invalid.ref_hint == "hello"
    [problem] = invalid.problems
    assert problem.startswith(f"{folder / 'hello'}: files changed while being copied (digest ")
    assert problem.endswith("; it will be read again")
    assert next(counter) == 2, "one retry, not a loop"


# --- archives ----------------------------------------------------------------------------


def test_archives_become_candidates_and_scratch_is_removed(
    source: DirectorySource, folder: Path, make_pack: PackFactory, tmp_path: Path
) -> None:
    hello = make_pack("hello", parent=tmp_path / "src")
    other = make_pack("other", parent=tmp_path / "src")
    tgz(folder / "hello.tgz", hello, "hello")  # one top-level directory
    zipped(folder / "other.zip", other)  # the pack at the top
    result = source.scan()
    assert result.invalid == ()
    found = by_entry(result)
    assert (found["hello.tgz"].ref, found["other.zip"].ref) == ("hello", "other")
    assert found["hello.tgz"].digest == load_pack(hello).digest
    assert found["other.zip"].snapshot.is_dir()
    assert list((tmp_path / "state" / "work" / "local").iterdir()) == []


def test_scratch_left_by_a_crash_is_swept(
    source: DirectorySource, folder: Path, make_pack: PackFactory, tmp_path: Path
) -> None:
    scratch = tmp_path / "state" / "work" / "local"
    crashed = write(scratch / "tmpcrashed" / "archive" / "pack.yaml", "ref: x\n").parents[1]
    os.utime(crashed, (time.time() - 7200, time.time() - 7200))
    running = write(scratch / "tmprunning" / "archive" / "pack.yaml", "ref: y\n").parents[1]
    tgz(folder / "hello.tgz", make_pack("hello", parent=tmp_path / "src"), "hello")
    assert [c.ref for c in source.scan().candidates] == ["hello"]
    assert sorted(p.name for p in scratch.iterdir()) == [running.name]


def test_an_unchanged_archive_is_not_extracted_again(
    source: DirectorySource, folder: Path, store: SnapshotStore, make_pack: PackFactory
) -> None:
    pack_dir = make_pack("hello", parent=folder.parent / "src")
    archive = tgz(folder / "hello.tar.gz", pack_dir, "hello")
    first = source.scan()
    hashed = store.bytes_hashed
    second = source.scan()
    assert second.candidates == first.candidates
    assert second.stats["cache_hits"] == 1 and store.bytes_hashed == hashed
    write(pack_dir / "actions" / "new.sh", "echo new\n")
    tgz(archive, pack_dir, "hello")
    third = source.scan()
    assert third.stats["cache_hits"] == 0 and store.bytes_hashed > hashed
    assert third.candidates[0].digest != first.candidates[0].digest


def test_a_fresh_archive_is_extracted_again_until_it_settles(
    folder: Path, make_pack: PackFactory, tmp_path: Path
) -> None:
    """Written this very moment, it may still change within the same timestamp tick."""
    store = SnapshotStore(tmp_path / "snaps", racy_window_ns=60_000_000_000)
    source = DirectorySource("local", folder, store, work_dir=tmp_path / "w")
    tgz(folder / "hello.tgz", make_pack("hello", parent=tmp_path / "src"), "hello")
    source.scan()
    hashed = store.bytes_hashed
    assert source.scan().stats["cache_hits"] == 0
    assert store.bytes_hashed > hashed


def test_an_archive_whose_snapshot_was_collected_is_extracted_again(
    source: DirectorySource, folder: Path, store: SnapshotStore, make_pack: PackFactory
) -> None:
    tgz(folder / "hello.tgz", make_pack("hello", parent=folder.parent / "src"), "hello")
    [first] = source.scan().candidates
    assert store.collect_garbage(set()) == [first.snapshot]
    again = source.scan()
    assert again.stats["cache_hits"] == 0 and again.stats["snapshots_made"] == 1
    assert again.candidates == (first,) and first.snapshot.is_dir()


def test_an_unusable_work_dir_makes_archives_invalid_not_the_scan_crash(
    folder: Path, store: SnapshotStore, make_pack: PackFactory, tmp_path: Path
) -> None:
    (tmp_path / "work").write_text("a file where the work directory should be")
    source = DirectorySource("local", folder, store, work_dir=tmp_path / "work")
    tgz(folder / "hello.tgz", make_pack("hello", parent=tmp_path / "src"), "hello")
    make_pack("plain", parent=folder)
    result = source.scan()
    assert [c.ref for c in result.candidates] == ["plain"]
    [invalid] = result.invalid
    assert invalid.entry == "hello.tgz"
    assert invalid.problems == (f"{tmp_path / 'work' / 'local'}: Not a directory",)


def test_a_malicious_archive_is_invalid_and_names_the_member(
    source: DirectorySource, folder: Path
) -> None:
    with tarfile.open(folder / "evil.tgz", "w:gz") as tar:
        info = tarfile.TarInfo("../../etc/cron.d/evil")
        tar.addfile(info)
    result = source.scan()
    [invalid] = result.invalid
    assert invalid.entry == "evil.tgz" and invalid.ref_hint is None
    assert invalid.problems == (
        f"{folder / 'evil.tgz'}: ../../etc/cron.d/evil: '..' in member path refused",
    )


def test_archive_caps_apply(
    folder: Path, store: SnapshotStore, make_pack: PackFactory, tmp_path: Path
) -> None:
    pack_dir = make_pack("hello", parent=tmp_path / "src", files={"big.txt": "x" * 5000})
    tgz(folder / "hello.tgz", pack_dir, "hello")
    small = DirectorySource(
        "local", folder, store, archive_limits=PackLimits(max_bytes=4096), work_dir=tmp_path
    )
    [invalid] = small.scan().invalid
    assert "more than the cap of 4096" in invalid.problems[0]


def test_an_invalid_pack_inside_an_archive_is_named_inside_the_archive(
    source: DirectorySource, folder: Path, make_pack: PackFactory, tmp_path: Path
) -> None:
    pack_dir = make_pack("hello", parent=tmp_path / "src", version="one")
    archive = tgz(folder / "hello.tgz", pack_dir, "hello")
    [invalid] = source.scan().invalid
    assert invalid.ref_hint == "hello"
    [problem] = invalid.problems
    assert problem.startswith(f"{archive / 'hello' / 'pack.yaml'}:4: version: ")


# --- events ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "entry"),
    [
        ("hello", "hello"),
        ("hello/actions/greet.sh", "hello"),
        ("hello.tgz", "hello.tgz"),
        (".hello", None),
        (".hello/pack.yaml", None),
        ("hello.tgz.part", None),
        ("pack.tmp", None),
        ("hello/__pycache__/lib.cpython-311.pyc", None),
        ("", None),  # the folder itself
        ("../elsewhere/hello", None),
    ],
)
def test_entry_for(source: DirectorySource, folder: Path, relative: str, entry: str | None) -> None:
    assert source.entry_for(folder / relative if relative else folder) == entry


def test_entry_for_accepts_paths_through_a_symlinked_folder(
    store: SnapshotStore, folder: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(folder)
    source = DirectorySource("local", link, store, work_dir=tmp_path / "w")
    assert source.entry_for(folder / "hello" / "pack.yaml") == "hello"
    assert source.entry_for(link / "hello" / "pack.yaml") == "hello"
    assert source.entry_for(Path("relative") / "hello") is None


def test_the_example_packs_are_candidates(source: DirectorySource, folder: Path) -> None:
    examples = Path(__file__).resolve().parents[3] / "examples"
    for pack in examples.iterdir():
        shutil.copytree(pack, folder / pack.name)
    result = source.scan()
    assert result.invalid == ()
    assert sorted(c.ref for c in result.candidates) == sorted(
        yaml.safe_load((pack / "pack.yaml").read_text())["ref"] for pack in examples.iterdir()
    )
