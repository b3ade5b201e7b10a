"""What a version directory shares with the snapshot it is stored from: blocks (a clone, where
the file system can), never an inode, so an edit of a served file never reaches the snapshot
the drift check restores it from."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

import pytest

from attuned.pack.content import digest, list_files
from attuned.store.packstore import FICLONE, PackStore
from tests.conftest import PackFactory

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_SHARED = 0x2000
_EXTENTS = 32


def can_clone(directory: Path) -> bool:
    source, target = directory / ".probe-source", directory / ".probe-target"
    source.write_bytes(b"probe")
    try:
        with source.open("rb") as src, target.open("wb") as out:
            fcntl.ioctl(out.fileno(), FICLONE, src.fileno())
        return True
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL):
            return False
        raise
    finally:
        source.unlink()
        target.unlink(missing_ok=True)


def shared_extents(path: Path) -> bool:
    """Whether every extent of `path` is marked shared (FIEMAP): blocks of a clone."""
    request = bytearray(struct.pack("=QQIIII", 0, 2**64 - 1, FIEMAP_FLAG_SYNC, 0, _EXTENTS, 0))
    request += bytes(56 * _EXTENTS)
    with path.open("rb") as handle:
        fcntl.ioctl(handle.fileno(), FS_IOC_FIEMAP, request)
    mapped = struct.unpack_from("=I", request, 20)[0]
    flags = [struct.unpack_from("=I", request, 32 + 56 * n + 40)[0] for n in range(mapped)]
    return bool(flags) and all(f & FIEMAP_EXTENT_SHARED for f in flags)


def stored(make_pack: PackFactory, tmp_path: Path) -> tuple[PackStore, Path, Path]:
    snapshot = make_pack("hello", files={"data/blob.bin": "x" * (1 << 20)})
    store = PackStore(tmp_path / "packs")
    version_dir, written = store.stage("hello", "1.0.0", snapshot, list_files(snapshot))
    assert written == digest(snapshot)
    return store, snapshot, version_dir


def test_a_stored_file_never_shares_its_inode_with_the_snapshot(
    make_pack: PackFactory, tmp_path: Path
) -> None:
    _, snapshot, version_dir = stored(make_pack, tmp_path)
    for item in list_files(version_dir):  # no hard link: list_files would refuse one
        kept, served = (snapshot / item.relpath).stat(), (version_dir / item.relpath).stat()
        assert kept.st_ino != served.st_ino and kept.st_nlink == served.st_nlink == 1
    with (version_dir / "data/blob.bin").open("r+b") as handle:  # tampered in place
        handle.write(b"tampered")
    assert (snapshot / "data/blob.bin").read_bytes()[:8] == b"xxxxxxxx"


def test_files_are_cloned_where_the_file_system_can(make_pack: PackFactory, tmp_path: Path) -> None:
    if not can_clone(tmp_path):
        pytest.skip(f"{tmp_path} cannot clone files (no reflink: ext4, tmpfs)")
    store, snapshot, version_dir = stored(make_pack, tmp_path)
    assert store.clones
    assert shared_extents(version_dir / "data/blob.bin")
    assert (version_dir / "data/blob.bin").read_bytes() == (snapshot / "data/blob.bin").read_bytes()
    assert os.stat(version_dir / "tests/run_tests.sh").st_mode & 0o777 == 0o755
    assert os.stat(version_dir / "pack.yaml").st_mode & 0o777 == 0o644


def test_where_files_cannot_be_cloned_they_are_copied_and_cloning_is_not_tried_again(
    make_pack: PackFactory, tmp_path: Path
) -> None:
    if can_clone(tmp_path):
        pytest.skip(f"{tmp_path} clones files")
    store, snapshot, version_dir = stored(make_pack, tmp_path)
    assert not store.clones
    assert digest(version_dir) == digest(snapshot)
    assert os.stat(version_dir / "tests/run_tests.sh").st_mode & 0o777 == 0o755
    assert [p.name for p in store.staging.iterdir()] == []  # the refused clone is gone
