"""Sources read in place for `attuned plan`: a folder is read where it is and nothing is
written; an unreadable one is never taken for an empty one."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from attuned.pack.loader import load_pack
from attuned.reconcile.inplace import scan_directory, with_origin_hints
from attuned.reconcile.model import Desired, InvalidCandidate
from tests.conftest import PackFactory


def test_an_entry_whose_manifest_names_no_ref_is_hinted_by_where_it_was_registered() -> None:
    blank = InvalidCandidate("folder", "app", "", ("pack.yaml: empty",), None)
    desired = with_origin_hints(Desired(invalid=(blank,)), {"folder:app": "app"})
    assert desired.invalid[0].ref_hint == "app"
    untouched = with_origin_hints(Desired(invalid=(blank,)), {"folder:other": "other"})
    assert untouched.invalid[0].ref_hint is None


def files_under(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): path.lstat().st_mtime_ns
        for path in root.rglob("*")
        if not path.is_dir()
    }


def test_a_folder_is_read_in_place_and_nothing_is_written(
    tmp_path: Path, make_pack: PackFactory
) -> None:
    folder = tmp_path / "folder"
    make_pack("good", parent=folder)
    make_pack("bad", parent=folder, version="x.y")
    (folder / "notes").mkdir()  # not a pack
    make_pack(".hidden", parent=folder)  # being dropped: ignored
    packed = make_pack("packed", parent=tmp_path / "archives")
    with tarfile.open(folder / "packed.tar.gz", "w:gz") as tar:
        tar.add(packed, arcname="packed")
    before = files_under(tmp_path)
    scratch_before = set(os.listdir(os.environ.get("TMPDIR", "/tmp")))

    scan = scan_directory("folder", folder, prune=True)

    assert files_under(tmp_path) == before
    assert not {
        n
        for n in set(os.listdir(os.environ.get("TMPDIR", "/tmp"))) - scratch_before
        if n.startswith("attuned-plan-")
    }
    assert scan.state.readable
    assert [(c.ref, c.entry) for c in scan.candidates] == [
        ("good", "good"),
        ("packed", "packed.tar.gz"),
    ]
    assert scan.candidates[0].snapshot == folder / "good"  # the folder itself, no copy
    assert scan.candidates[0].digest == load_pack(folder / "good").digest
    [bad] = scan.invalid
    assert (bad.entry, bad.ref_hint) == ("bad", "bad")
    assert "'x.y' is not a semantic version" in bad.problems[0]
    assert set(scan.packs) == {"good", "packed.tar.gz"}


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_folder_that_cannot_be_read_is_unreadable_never_empty(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "folder"
    if kind == "file":
        path.write_text("")
    scan = scan_directory("folder", path, prune=True)
    assert not scan.state.readable and scan.state.error and scan.candidates == ()
