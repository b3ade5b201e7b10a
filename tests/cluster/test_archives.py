"""Pack archives: deterministic bytes, the size cap, and verification that trusts nothing."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import select, update

from attuned.cluster.archives import (
    ArchiveRejected,
    ArchiveTooLarge,
    load_archive,
    pack_archive,
    prune_archives,
    store_archive,
    unpack_verified,
)
from attuned.errors import AttunedError
from attuned.pack.content import digest, list_files
from attuned.pack.limits import PackLimits
from attuned.registry import Registry
from attuned.store.database import Database
from attuned.store.models import PackArchive
from attuned.store.packstore import PackStore
from tests.cluster.archive_helpers import MAX_BYTES, publish, tree
from tests.conftest import PackFactory, write

ARCHIVES = PackArchive.__table__  # type: ignore[attr-defined]


@pytest.fixture
def pack_dir(make_pack: PackFactory) -> Path:
    root = make_pack(
        "tools", files={"actions/run.yaml": "ref: tools.run\n", "README.md": "tools\n"}
    )
    write(root / "actions/run.sh", "#!/bin/sh\necho run\n", executable=True)
    (root / "lib").mkdir()
    (root / "lib/blob.bin").write_bytes(bytes(range(256)) * 40)
    (root / "__pycache__").mkdir()
    (root / "__pycache__/x.cpython-311.pyc").write_bytes(b"not pack content")
    return root


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def _tar_gz(
    members: dict[str, bytes | None],
    *,
    executable: frozenset[str] = frozenset(),
    symlink: str | None = None,
) -> bytes:
    """A hand-made archive: name -> content (None: a directory), plus an optional symlink."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o755 if name in executable else 0o644
                tar.addfile(info, io.BytesIO(content))
        if symlink is not None:
            link = tarfile.TarInfo(symlink)
            link.type = tarfile.SYMTYPE
            link.linkname = "/etc/passwd"
            tar.addfile(link)
    return raw.getvalue()


def _files_of(pack: Path) -> dict[str, bytes | None]:
    return {f.relpath: (pack / f.relpath).read_bytes() for f in list_files(pack)}


def _executables(pack: Path) -> frozenset[str]:
    return frozenset(f.relpath for f in list_files(pack) if f.executable)


# -- building ------------------------------------------------------------------------------


def test_same_content_gives_the_same_bytes_whatever_the_metadata(
    pack_dir: Path, tmp_path: Path
) -> None:
    first = pack_archive(pack_dir)
    copy = tmp_path / "copy"
    for item in reversed(list_files(pack_dir)):  # created in another order
        dest = copy / item.relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((pack_dir / item.relpath).read_bytes())
        dest.chmod(0o700 if item.executable else 0o600)  # other modes, same exec bit
        os.utime(dest, (1_000_000, 1_000_000))
    assert pack_archive(copy) == first
    assert pack_archive(pack_dir) == first

    (copy / "README.md").write_text("tools!\n")
    assert pack_archive(copy) != first


def test_archive_holds_exactly_the_pack_files_with_neutral_metadata(pack_dir: Path) -> None:
    data = pack_archive(pack_dir)
    assert data[:2] == b"\x1f\x8b" and data[3] == 0  # gzip, no file name stored
    assert data[4:8] == b"\0\0\0\0"  # gzip header mtime 0
    members = _members(data)
    files = list_files(pack_dir)
    assert [m.name for m in members] == sorted(f.relpath for f in files)
    assert "__pycache__/x.cpython-311.pyc" not in [m.name for m in members]
    executable = {f.relpath for f in files if f.executable}
    assert executable == {"actions/run.sh", "tests/run_tests.sh"}
    for member in members:
        assert member.isreg()
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (
            0,
            0,
            0,
            "",
            "",
        )
        assert member.mode == (0o755 if member.name in executable else 0o644)


# -- storing -------------------------------------------------------------------------------


def test_store_is_content_addressed_and_load_returns_the_bytes(
    database: Database, pack_dir: Path
) -> None:
    key = digest(pack_dir)
    with database.write() as session:
        assert store_archive(session, pack_dir, key, max_bytes=MAX_BYTES) is True
    with database.write() as session:
        assert store_archive(session, pack_dir, key, max_bytes=MAX_BYTES) is False
    with database.read() as session:
        row = session.execute(
            select(ARCHIVES.c.size, ARCHIVES.c.compressed_size).where(ARCHIVES.c.digest == key)
        ).one()
        assert load_archive(session, key) == pack_archive(pack_dir)
        assert load_archive(session, "0" * 64) is None
    assert row.size == sum(f.size for f in list_files(pack_dir))
    assert row.compressed_size == len(pack_archive(pack_dir)) < row.size


def test_store_refuses_a_directory_that_is_not_the_digest(
    database: Database, pack_dir: Path
) -> None:
    with pytest.raises(AttunedError, match="does not have digest"), database.write() as session:
        store_archive(session, pack_dir, "f" * 64, max_bytes=MAX_BYTES)
    with database.read() as session:
        assert load_archive(session, "f" * 64) is None


def test_cap_applies_to_uncompressed_and_compressed_sizes(
    database: Database, tmp_path: Path
) -> None:
    pack = tmp_path / "noise"
    pack.mkdir()
    (pack / "pack.yaml").write_text("ref: noise\n")
    (pack / "noise.bin").write_bytes(os.urandom(20_000))  # incompressible
    size = sum(f.size for f in list_files(pack))
    key = digest(pack)
    with pytest.raises(ArchiveTooLarge, match="bytes of files"), database.write() as session:
        store_archive(session, pack, key, max_bytes=size - 1)
    # random bytes plus tar headers compress to more than they were: the second check bites
    assert len(pack_archive(pack)) > size
    with pytest.raises(ArchiveTooLarge, match="compressed"), database.write() as session:
        store_archive(session, pack, key, max_bytes=size)
    with database.read() as session:
        assert load_archive(session, key) is None


# -- verifying -----------------------------------------------------------------------------


def test_unpack_verified_rebuilds_the_identical_tree(pack_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "tools"
    unpack_verified(pack_archive(pack_dir), target, digest(pack_dir))
    expected = {k: v for k, v in tree(pack_dir).items() if not k.startswith("__pycache__")}
    assert tree(target) == expected
    assert expected["actions/run.sh"][1] == 0o755
    assert sorted(p.name for p in target.parent.iterdir()) == ["tools"]  # no temp file left


def _set_archive(database: Database, key: str, data: bytes) -> None:
    with database.write() as session:
        updated = session.execute(
            update(ARCHIVES).where(ARCHIVES.c.digest == key).values(data=data)
        )
        assert updated.rowcount == 1  # type: ignore[attr-defined]


def _stored(database: Database, pack_dir: Path) -> str:
    key = digest(pack_dir)
    with database.write() as session:
        store_archive(session, pack_dir, key, max_bytes=MAX_BYTES)
    return key


def _loaded(database: Database, key: str) -> bytes:
    with database.read() as session:
        data = load_archive(session, key)
    assert data is not None
    return data


def test_a_foreign_but_faithful_archive_verifies(pack_dir: Path, tmp_path: Path) -> None:
    """The hand-made archives below fail because of their tampering, not their making."""
    data = _tar_gz(_files_of(pack_dir), executable=_executables(pack_dir))
    unpack_verified(data, tmp_path / "tools", digest(pack_dir))
    assert digest(tmp_path / "tools") == digest(pack_dir)


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        ("flip_a_byte", "refused|digest"),
        ("other_content", "unpacks to content with digest"),
        ("extra_pyc", "cannot: __pycache__"),  # the digest ignores it: only the stray check sees
        ("empty_dir", "cannot: empty"),
    ],
)
def test_tampered_archive_in_the_database_is_refused_and_leaves_nothing(
    database: Database, pack_dir: Path, tmp_path: Path, tamper: str, why: str
) -> None:
    key = _stored(database, pack_dir)
    original = _loaded(database, key)
    members = _files_of(pack_dir)
    if tamper == "flip_a_byte":
        middle = len(original) // 2
        data = original[:middle] + bytes([original[middle] ^ 0x01]) + original[middle + 1 :]
    else:
        if tamper == "other_content":
            members["README.md"] = b"tools, but not the ones you registered\n"
        elif tamper == "extra_pyc":
            members["__pycache__/evil.cpython-311.pyc"] = b"payload"
        else:
            members["empty"] = None
        data = _tar_gz(members, executable=_executables(pack_dir))
    _set_archive(database, key, data)
    assert _loaded(database, key) == data != original

    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ArchiveRejected, match=why):
        unpack_verified(_loaded(database, key), work / "tools", key)
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(
    ("members", "symlink", "why"),
    [
        ({"../escape.txt": b"x"}, None, "'..'"),
        ({"/etc/attuned-abs": b"x"}, None, "absolute"),
        ({"pack.yaml": b"ref: x\n"}, "link", "symbolic link"),
    ],
)
def test_unsafe_members_are_refused(
    tmp_path: Path, members: dict[str, bytes | None], symlink: str | None, why: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ArchiveRejected, match=why):
        unpack_verified(_tar_gz(members, symlink=symlink), work / "pack", "0" * 64)
    assert list(work.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()
    assert not Path("/etc/attuned-abs").exists()


def test_extraction_caps_apply(pack_dir: Path, tmp_path: Path) -> None:
    data = pack_archive(pack_dir)
    with pytest.raises(ArchiveRejected, match="more than 2 members"):
        unpack_verified(data, tmp_path / "a", digest(pack_dir), limits=PackLimits(max_files=2))
    with pytest.raises(ArchiveRejected, match="cap"):
        unpack_verified(data, tmp_path / "b", digest(pack_dir), limits=PackLimits(max_bytes=100))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


# -- pruning -------------------------------------------------------------------------------


def test_prune_deletes_only_archives_no_pack_references(
    database: Database, make_pack: PackFactory, pack_dir: Path, tmp_path: Path
) -> None:
    registry = Registry(database, PackStore(tmp_path / "leader"))
    kept = [publish(registry, make_pack(ref)).digest for ref in ("alpha", "beta")]
    orphan = _stored(database, pack_dir)  # archived, never registered
    extra = make_pack("gamma")
    spared = _stored(database, extra)

    with database.write() as session:
        assert prune_archives(session, keep={spared}) == 1
    with database.write() as session:
        assert prune_archives(session, keep={spared}) == 0
    with database.read() as session:
        assert load_archive(session, orphan) is None
        assert all(load_archive(session, key) is not None for key in [*kept, spared])

    registry.unregister("alpha")
    with database.write() as session:
        assert prune_archives(session, keep=set()) == 2  # alpha's and the spared one
    with database.read() as session:
        assert load_archive(session, kept[1]) is not None
