"""Hostile archives and folders, beyond tests/store/test_archive.py: each is refused with a
clear problem, nothing lands outside the scratch directory, and the other packs keep loading.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from attuned.errors import ValidationFailed
from attuned.pack.limits import PackLimits
from attuned.pack.loader import load_pack
from attuned.reconcile.snapshots import SnapshotStore
from attuned.reconcile.sources.base import ScanResult
from attuned.reconcile.sources.directory import DirectorySource
from attuned.store.archive import extract_archive
from attuned.yamlfile import MAX_ALIAS_NODES

MANIFEST = b"ref: hello\nlabel: Hello\ndescription: d\nversion: 1.0.0\n"
GOOD = b"ref: good\nlabel: Good\ndescription: d\nversion: 1.0.0\n"
MiB = 1 << 20


def member(tar: tarfile.TarFile, name: str, data: bytes = b"", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def link(tar: tarfile.TarFile, name: str, kind: bytes, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


def tgz(path: Path, members: dict[str, bytes], *, errors: str = "strict") -> Path:
    with tarfile.open(path, "w:gz", encoding="utf-8", errors=errors) as tar:
        for name, data in members.items():
            member(tar, name, data)
    return path


def refusal(archive: Path, target: Path, limits: PackLimits | None = None) -> str:
    with pytest.raises(ValidationFailed) as caught:
        extract_archive(archive, target, limits)
    [problem] = caught.value.problems
    assert not target.exists(), "a refused archive leaves nothing behind"
    return str(problem)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "packs.d"
    path.mkdir()
    (path / "good").mkdir()
    (path / "good" / "pack.yaml").write_bytes(GOOD)
    return path


@pytest.fixture
def source(folder: Path, tmp_path: Path) -> DirectorySource:
    store = SnapshotStore(tmp_path / "state" / "snapshots", racy_window_ns=0)
    return DirectorySource("local", folder, store, work_dir=tmp_path / "state" / "work")


def only_invalid(result: ScanResult) -> tuple[str, tuple[str, ...]]:
    """The one invalid entry of a scan, after checking the good pack still came through."""
    assert [c.ref for c in result.candidates] == ["good"]
    [invalid] = result.invalid
    for problem in invalid.problems:
        assert "\n" not in problem, "one problem, one log line"
    return invalid.entry, invalid.problems


# --- escapes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a/./../../evil", "./../evil", "hello/./../../../evil", "//evil", "/./evil", "\\evil"],
)
def test_more_escaping_member_names(tmp_path: Path, name: str) -> None:
    for archive in (
        tgz(tmp_path / "bad.tgz", {"pack.yaml": MANIFEST, name: b"x"}),
        _zip(tmp_path / "bad.zip", {"pack.yaml": MANIFEST, name: b"x"}),
    ):
        assert refusal(archive, tmp_path / "x" / "out").startswith(f"{archive}: {name}: ")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "x" / "evil").exists()


@pytest.mark.parametrize(
    ("kind", "target", "expected"),
    [
        (tarfile.LNKTYPE, "/etc/passwd", "hard link (to '/etc/passwd') refused"),
        (tarfile.LNKTYPE, "../../etc/passwd", "hard link (to '../../etc/passwd') refused"),
        (tarfile.SYMTYPE, "../../../../etc", "symbolic link (to '../../../../etc') refused"),
        (tarfile.SYMTYPE, "loop", "symbolic link (to 'loop') refused"),  # a loop to itself
    ],
)
def test_links_pointing_out_or_in_circles(
    tmp_path: Path, kind: bytes, target: str, expected: str
) -> None:
    archive = tmp_path / "links.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        member(tar, "pack.yaml", MANIFEST)
        link(tar, "loop", kind, target)
        member(tar, "loop/x", b"written through the link?")
    assert refusal(archive, tmp_path / "out") == f"{archive}: loop: {expected}"


def test_a_symlink_then_a_file_through_it(tmp_path: Path) -> None:
    """The classic two-step: `dir -> /tmp/x`, then `dir/file`; refused at the first step."""
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "twostep.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("dir")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, str(outside))
        zf.writestr("dir/file", b"pwned")
    assert refusal(archive, tmp_path / "out").endswith("dir: symbolic link refused")
    assert list(outside.iterdir()) == []


# --- names -------------------------------------------------------------------------------


def test_a_tar_member_name_that_is_not_utf8(tmp_path: Path) -> None:
    archive = tgz(
        tmp_path / "latin.tgz",
        {"pack.yaml": MANIFEST, "caf\udce9.txt": b"x"},
        errors="surrogateescape",
    )
    assert refusal(archive, tmp_path / "out").endswith(": member name is not UTF-8")


@pytest.mark.parametrize("maker", ["tgz", "zip"])
def test_a_member_name_with_a_newline_makes_the_pack_invalid(
    source: DirectorySource, folder: Path, maker: str
) -> None:
    members = {"pack.yaml": MANIFEST, "docs/fake\nERROR all packs removed.txt": b"x"}
    if maker == "tgz":
        tgz(folder / "hello.tgz", members)
    else:
        _zip(folder / "hello.zip", members)
    entry, problems = only_invalid(source.scan())
    assert entry == f"hello.{maker}"
    assert problems == (
        f"{folder / entry}: file name 'docs/fake\\nERROR all packs removed.txt' has a control "
        "character; rename it",
    )


def test_a_member_without_permissions_is_extracted_readable(tmp_path: Path) -> None:
    archive = tmp_path / "noperm.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        member(tar, "pack.yaml", MANIFEST, mode=0)
        member(tar, "actions/run.sh", b"#!/bin/sh\n", mode=0o100)
    root = extract_archive(archive, tmp_path / "out")
    assert stat.S_IMODE((root / "pack.yaml").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "actions/run.sh").stat().st_mode) == 0o755
    assert load_pack(root).ref == "hello"


# --- bombs -------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_an_overlapping_zip_bomb_is_refused_by_what_it_declares(tmp_path: Path) -> None:
    """Many central-directory entries share one compressed member (Fifield's construction):
    the archive stays small while the entries add up to more than the default cap."""
    archive = _zip(tmp_path / "overlap.zip", {"pack.yaml": MANIFEST, "z000": bytes(10 * MiB)})
    data = archive.read_bytes()
    end = data.rindex(b"PK\x05\x06")
    count, cd_size, cd_offset = struct.unpack_from("<HII", data, end + 10)
    central = data[cd_offset : cd_offset + cd_size]
    last = central.rindex(b"PK\x01\x02")
    entry = central[last:]
    copies = [entry.replace(b"z000", f"z{i:03d}".encode()) for i in range(1, 30)]
    new_central = central + b"".join(copies)
    eocd = bytearray(data[end:])
    struct.pack_into("<HHI", eocd, 8, count + 29, count + 29, len(new_central))
    archive.write_bytes(data[:cd_offset] + new_central + bytes(eocd))
    assert archive.stat().st_size < 64 * 1024
    rendered = refusal(archive, tmp_path / "out")
    assert "more than the cap of 268435456" in rendered, rendered


def test_a_tar_header_declaring_a_huge_member_is_refused_before_reading(tmp_path: Path) -> None:
    archive = tmp_path / "huge.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        member(tar, "pack.yaml", MANIFEST)
        info = tarfile.TarInfo("zeros")
        info.size = 300 * MiB
        tar.addfile(info)  # the header only: the data would be read after the check
    assert archive.stat().st_size < 4096
    rendered = refusal(archive, tmp_path / "out")
    assert rendered.endswith(
        f"declares {300 * MiB + len(MANIFEST)} bytes, more than the cap of {256 * MiB}"
    )


def test_a_high_ratio_member_is_refused(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "ratio.zip", {"pack.yaml": MANIFEST, "zeros": bytes(20 * MiB)})
    assert archive.stat().st_size < 64 * 1024  # > 300:1
    assert "refused as a decompression bomb" in refusal(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("zeros"))


def test_a_high_ratio_tar_is_cut_off_while_written(tmp_path: Path) -> None:
    """tar.gz declares sizes too, but the written bytes are what the cap finally counts."""
    archive = tgz(tmp_path / "zeros.tgz", {"pack.yaml": MANIFEST, "zeros": bytes(20 * MiB)})
    assert archive.stat().st_size < 64 * 1024
    assert "decompression bomb" in refusal(archive, tmp_path / "out")


def test_a_gzip_of_a_bomb_within_the_caps_is_bounded_by_them(tmp_path: Path) -> None:
    """What protects today: whatever the ratio, no more than max_bytes reach the disk."""
    archive = tgz(tmp_path / "zeros.tgz", {"pack.yaml": MANIFEST, "zeros": bytes(8 * MiB)})
    limits = PackLimits(max_bytes=4 * MiB)
    assert "more than the cap of 4194304" in refusal(archive, tmp_path / "out", limits)


# --- the watched folder ------------------------------------------------------------------


def test_a_symlink_loop_as_an_entry(source: DirectorySource, folder: Path) -> None:
    os.symlink("hello", folder / "hello")
    entry, problems = only_invalid(source.scan())
    assert entry == "hello"
    assert problems == (f"{folder / 'hello'}: Too many levels of symbolic links",)


def test_symlink_loops_inside_a_pack(source: DirectorySource, folder: Path) -> None:
    (folder / "hello").mkdir()
    (folder / "hello" / "pack.yaml").write_bytes(MANIFEST)
    os.symlink("a", folder / "hello" / "b")
    os.symlink("b", folder / "hello" / "a")
    os.symlink(".", folder / "hello" / "self")
    entry, problems = only_invalid(source.scan())
    assert entry == "hello"
    assert sorted(p.rpartition(": ")[2] for p in problems) == [
        "symbolic link (to '.') refused",
        "symbolic link (to 'a') refused",
        "symbolic link (to 'b') refused",
    ]


@pytest.mark.parametrize("name", ["hello.tgz", "hello.zip"])
def test_special_files_named_like_archives_are_skipped_without_hanging(
    source: DirectorySource, folder: Path, name: str
) -> None:
    os.mkfifo(folder / name)
    os.symlink("/dev/zero", folder / f"zero-{name}")
    result = source.scan()
    assert [c.ref for c in result.candidates] == ["good"] and result.invalid == ()
    assert result.stats["skipped"] == 2


def test_a_fifo_inside_a_pack(source: DirectorySource, folder: Path) -> None:
    (folder / "hello" / "actions").mkdir(parents=True)
    (folder / "hello" / "pack.yaml").write_bytes(MANIFEST)
    os.mkfifo(folder / "hello" / "actions" / "a.yaml")  # would block a plain open()
    entry, problems = only_invalid(source.scan())
    assert entry == "hello"
    fifo = folder / "hello" / "actions" / "a.yaml"
    assert f"{fifo}: not a regular file (device, FIFO or socket)" in problems
    assert f"{fifo}: not a regular file (directory, FIFO or device)" in problems


def test_a_device_inside_a_pack(source: DirectorySource, folder: Path) -> None:
    (folder / "hello").mkdir()
    (folder / "hello" / "pack.yaml").write_bytes(MANIFEST)
    try:
        os.mknod(folder / "hello" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    _, problems = only_invalid(source.scan())
    assert problems == (
        f"{folder / 'hello' / 'null'}: not a regular file (device, FIFO or socket)",
    )


def test_a_hard_link_to_a_file_outside(
    source: DirectorySource, folder: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret").write_text("s3cret")
    (folder / "hello").mkdir()
    (folder / "hello" / "pack.yaml").write_bytes(MANIFEST)
    os.link(tmp_path / "secret", folder / "hello" / "secret.txt")
    _, problems = only_invalid(source.scan())
    assert problems == (f"{folder / 'hello' / 'secret.txt'}: hard link refused",)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and lists whatever chmod says")
def test_an_unreadable_directory_inside_a_pack(source: DirectorySource, folder: Path) -> None:
    locked = folder / "hello" / "docs"
    locked.mkdir(parents=True)
    (folder / "hello" / "pack.yaml").write_bytes(MANIFEST)
    locked.chmod(0)
    try:
        _, problems = only_invalid(source.scan())
    finally:
        locked.chmod(0o755)
    assert problems == (f"{locked}: cannot read: Permission denied",)


def test_an_alias_bomb_in_an_archive_names_the_member(
    source: DirectorySource, folder: Path
) -> None:
    bomb = b'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n".encode()
        for i in range(8)
    )
    tgz(folder / "hello.tgz", {"pack.yaml": MANIFEST, "actions/a.yaml": bomb})
    entry, problems = only_invalid(source.scan())
    assert entry == "hello.tgz"
    [problem] = problems
    assert problem.startswith(f"{folder / 'hello.tgz' / 'actions' / 'a.yaml'}:")
    assert f"aliases expand to more than {MAX_ALIAS_NODES} nodes" in problem
