"""The pack store: versioned directories, atomic symlink swap, repair after a crash, GC."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from attuned.errors import StoreError
from attuned.pack.content import digest, list_files
from attuned.store.packstore import PackStore, version_dirname
from tests.conftest import PackFactory


def test_prepare_then_activate(make_pack: PackFactory, tmp_path: Path) -> None:
    src = make_pack(files={"README.md": "v1\n"})
    store = PackStore(tmp_path / "packs")
    files = list_files(src)
    version_dir = store.prepare("hello", "1.0.0", src, files)
    assert version_dir.name == version_dirname("hello", "1.0.0", digest(src, files))
    assert store.active_dir("hello") is None  # prepared is not served
    store.activate("hello", version_dir)
    assert (tmp_path / "packs/hello/README.md").read_text() == "v1\n"
    assert os.readlink(tmp_path / "packs/hello") == f".versions/{version_dir.name}"
    assert (tmp_path / "packs/hello/tests/run_tests.sh").stat().st_mode & 0o111


def test_swap_replaces_link_and_discard_keeps_served_dir(
    make_pack: PackFactory, tmp_path: Path
) -> None:
    store = PackStore(tmp_path / "packs")
    src = make_pack(files={"README.md": "v1\n"})
    first = store.prepare("hello", "1.0.0", src, list_files(src))
    store.activate("hello", first)
    (src / "README.md").write_text("v2\n")
    second = store.prepare("hello", "1.0.1", src, list_files(src))
    store.activate("hello", second)
    assert (tmp_path / "packs/hello/README.md").read_text() == "v2\n"
    store.discard(second)  # served: must stay
    assert second.is_dir()
    store.discard(first)
    assert not first.exists()


def test_hand_made_directory_is_not_overwritten(tmp_path: Path, make_pack: PackFactory) -> None:
    store = PackStore(tmp_path / "packs")
    (tmp_path / "packs/hello").mkdir(parents=True)
    src = make_pack()
    version_dir = store.prepare("hello", "1.0.0", src, list_files(src))
    with pytest.raises(StoreError, match="not a symlink managed by attuned"):
        store.activate("hello", version_dir)


def test_repair_relinks_to_what_the_database_says(make_pack: PackFactory, tmp_path: Path) -> None:
    store = PackStore(tmp_path / "packs")
    src = make_pack(files={"README.md": "v1\n"})
    old = store.prepare("hello", "1.0.0", src, list_files(src))
    store.activate("hello", old)
    (src / "README.md").write_text("v2\n")
    new = store.prepare("hello", "1.0.1", src, list_files(src))
    # crash after the database committed 1.0.1 but before the link was swapped:
    new_digest = digest(new)
    fixed = store.repair({"hello": ("1.0.1", new_digest), "gone": ("1.0.0", "0" * 64)})
    assert "relinked:hello" in fixed and "missing:gone" in fixed
    assert store.active_dir("hello") == new.resolve()
    # a link the database does not know is removed
    os.symlink(".versions/" + old.name, tmp_path / "packs/stray")
    assert store.repair({"hello": ("1.0.1", new_digest)}) == ["unlinked:stray"]


def test_collect_garbage_spares_served_and_young(make_pack: PackFactory, tmp_path: Path) -> None:
    store = PackStore(tmp_path / "packs")
    src = make_pack(files={"README.md": "v1\n"})
    served = store.prepare("hello", "1.0.0", src, list_files(src))
    store.activate("hello", served)
    (src / "README.md").write_text("v2\n")
    orphan = store.prepare("hello", "1.0.1", src, list_files(src))
    (store.staging / "leftover").mkdir()
    assert store.collect_garbage(min_age=3600) == []  # all too young
    removed = store.collect_garbage()
    assert set(removed) == {orphan, store.staging / "leftover"}
    assert served.is_dir()


def test_scratch_left_by_a_dead_process_goes_at_once(
    make_pack: PackFactory, tmp_path: Path
) -> None:
    """A SIGKILL between symlink() and rename() leaves a `.ref.link-*`; the next start removes
    it without waiting an hour, and never touches a live process's scratch."""
    store = PackStore(tmp_path / "packs")
    src = make_pack(files={"README.md": "v1\n"})
    served = store.prepare("hello", "1.0.0", src, list_files(src))
    store.activate("hello", served)
    child = subprocess.Popen(["true"])
    child.wait()
    target = f".versions/{served.name}"
    dead_link = tmp_path / f"packs/.hello.link-p{child.pid}-{'a' * 32}"
    live_link = tmp_path / f"packs/.hello.link-p{os.getpid()}-{'b' * 32}"
    ownerless = tmp_path / f"packs/.hello.link-{'c' * 32}"  # named before owners were recorded
    dead_staging = store.staging / f"hello-p{child.pid}-{'d' * 32}"
    for link in (dead_link, live_link, ownerless):
        os.symlink(target, link)
    dead_staging.mkdir()
    removed = store.collect_garbage(min_age=3600)
    assert set(removed) == {dead_link, dead_staging}
    assert live_link.is_symlink() and ownerless.is_symlink()
    assert store.active_dir("hello") == served.resolve()


def test_stage_says_what_the_directory_holds(make_pack: PackFactory, tmp_path: Path) -> None:
    """A new copy: the digest of the bytes written (not read back). Identical content
    already there: the digest of what that directory holds now, damage included, so the
    registry refuses to serve it."""
    store = PackStore(tmp_path / "packs")
    src = make_pack(files={"README.md": "v1\n"})
    files = list_files(src)
    fresh, written = store.stage("hello", "1.0.0", src, files)
    assert written == digest(src, files) == digest(fresh)
    (fresh / "README.md").write_text("v0\n")  # edited in place after it was made
    again, held = store.stage("hello", "1.0.0", src, files)
    assert again == fresh and held == digest(fresh) != written
    assert list(store.staging.iterdir()) == [], "the second copy is not kept"


class _DirectorySyncs:
    """Directories opened as _fsync_dir opens them (O_DIRECTORY), seen by a CPython audit
    hook: the fsyncs a store makes, without replacing anything."""

    def __init__(self) -> None:
        self.seen: list[str] | None = None
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or self.seen is None or not isinstance(args[2], int):
            return
        if args[2] & os.O_DIRECTORY and isinstance(args[0], str | os.PathLike):
            self.seen.append(os.path.basename(os.fspath(args[0])))

    def during(self, action: Callable[[], object]) -> list[str]:
        self.seen = []
        try:
            action()
            return self.seen
        finally:
            self.seen = None


SYNCS = _DirectorySyncs()


def test_a_deferred_link_swap_is_synced_with_the_next_version(
    make_pack: PackFactory, tmp_path: Path
) -> None:
    """One journal commit a registration, not two: the swap's fsync waits for the next
    stage() (or sync()), back to back with the fsync of `.versions`."""
    store = PackStore(tmp_path / "packs")
    src = make_pack(files={"README.md": "v1\n"})
    first = store.prepare("hello", "1.0.0", src, list_files(src))
    assert SYNCS.during(lambda: store.activate("hello", first, sync=False)) == []
    (src / "README.md").write_text("v2\n")
    assert SYNCS.during(lambda: store.stage("hello", "1.0.1", src, list_files(src))) == [
        ".versions",
        "packs",
    ]
    assert SYNCS.during(lambda: store.activate("hello", first)) == ["packs"]
    assert SYNCS.during(store.sync) == [], "nothing was waiting"
    store.activate("hello", first, sync=False)
    assert SYNCS.during(store.sync) == ["packs"]
