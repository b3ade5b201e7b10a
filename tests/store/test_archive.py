"""Archive extraction with real tar and zip files, honest ones and malicious ones."""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from attuned.errors import ValidationFailed
from attuned.pack.limits import PackLimits
from attuned.store.archive import (
    ArchiveRefused,
    copy_capped,
    extract_archive,
    is_archive,
    safe_member_path,
)

MANIFEST = b"ref: hello\nlabel: Hello\ndescription: d\nversion: 1.0.0\n"


def tar_member(tar: tarfile.TarFile, name: str, data: bytes = b"", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def special_member(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    tar.addfile(info)


def make_tgz(path: Path, fill: Callable[[tarfile.TarFile], None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        fill(tar)
    return path


def make_zip(path: Path, members: dict[str, bytes], modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (modes or {}).get(name, 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


def refusal(archive: Path, target: Path, limits: PackLimits | None = None) -> str:
    """Extract expecting a refusal; return the one problem, rendered, and check the cleanup."""
    with pytest.raises(ValidationFailed) as caught:
        extract_archive(archive, target, limits)
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.file == archive
    assert not target.exists(), "a refused archive leaves nothing behind"
    return str(problem)


# --- honest archives -------------------------------------------------------------------


def test_tgz_with_one_top_level_directory(tmp_path: Path) -> None:
    archive = make_tgz(
        tmp_path / "hello.tgz",
        lambda tar: (
            tar_member(tar, "hello/pack.yaml", MANIFEST),
            tar_member(tar, "hello/actions/greet.sh", b"#!/bin/sh\necho hi\n", mode=0o755),
        ),
    )
    root = extract_archive(archive, tmp_path / "out")
    assert root == tmp_path / "out" / "hello"
    assert (root / "pack.yaml").read_bytes() == MANIFEST
    script = root / "actions" / "greet.sh"
    assert script.read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.stat(script).st_mode & 0o777 == 0o755
    assert os.stat(root / "pack.yaml").st_mode & 0o777 == 0o644


def test_zip_with_the_pack_at_its_top(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "hello.zip",
        {"pack.yaml": MANIFEST, "actions/": b"", "actions/a.yaml": b"x: 1\n"},
        {"actions/": 0o40755},
    )
    root = extract_archive(archive, tmp_path / "out")
    assert root == tmp_path / "out"
    assert (root / "actions" / "a.yaml").read_bytes() == b"x: 1\n"


def test_tar_with_dot_slash_names_and_macos_clutter(tmp_path: Path) -> None:
    archive = make_tgz(
        tmp_path / "hello.tar.gz",
        lambda tar: (
            special_member(tar, "./", tarfile.DIRTYPE),
            tar_member(tar, "./hello/pack.yaml", MANIFEST),
            tar_member(tar, "./__MACOSX/._hello", b"resource fork"),
            tar_member(tar, "./.DS_Store", b"junk"),
        ),
    )
    assert extract_archive(archive, tmp_path / "out") == tmp_path / "out" / "hello"


def test_is_archive() -> None:
    assert is_archive("a.tar.gz") and is_archive("a.TGZ") and is_archive("a.zip")
    assert not is_archive("a.tar") and not is_archive("a.gz") and not is_archive("zip")


# --- malicious or broken archives ------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        ("../evil", "'..' in member path refused"),
        ("hello/../../evil", "'..' in member path refused"),
        ("/abs/evil", "absolute path refused"),
        ("C:/evil", "absolute path refused"),
        ("hello\\..\\evil", "backslash in member name refused (a Windows path?)"),
    ],
)
def test_tar_paths_that_escape_are_refused(tmp_path: Path, member: str, expected: str) -> None:
    archive = make_tgz(
        tmp_path / "bad.tgz",
        lambda tar: (tar_member(tar, "hello/pack.yaml", MANIFEST), tar_member(tar, member, b"x")),
    )
    rendered = refusal(archive, tmp_path / "sub" / "out")
    assert rendered == f"{archive}: {member}: {expected}"
    assert not (tmp_path / "evil").exists() and not (tmp_path / "sub" / "evil").exists()
    assert not Path("/abs/evil").exists()


@pytest.mark.parametrize(
    ("kind", "linkname", "expected"),
    [
        (tarfile.SYMTYPE, "/etc/passwd", "symbolic link (to '/etc/passwd') refused"),
        (tarfile.SYMTYPE, "pack.yaml", "symbolic link (to 'pack.yaml') refused"),
        (tarfile.LNKTYPE, "hello/pack.yaml", "hard link (to 'hello/pack.yaml') refused"),
        (tarfile.CHRTYPE, "", "device refused"),
        (tarfile.BLKTYPE, "", "device refused"),
        (tarfile.FIFOTYPE, "", "FIFO refused"),
    ],
)
def test_tar_links_devices_and_fifos_are_refused(
    tmp_path: Path, kind: bytes, linkname: str, expected: str
) -> None:
    archive = make_tgz(
        tmp_path / "bad.tgz",
        lambda tar: (
            tar_member(tar, "hello/pack.yaml", MANIFEST),
            special_member(tar, "hello/thing", kind, linkname),
        ),
    )
    assert refusal(archive, tmp_path / "out") == f"{archive}: hello/thing: {expected}"


@pytest.mark.parametrize(
    ("name", "mode", "expected"),
    [
        ("../evil", 0o100644, "'..' in member path refused"),
        ("/abs/evil", 0o100644, "absolute path refused"),
        ("link", stat.S_IFLNK | 0o777, "symbolic link refused"),
        ("fifo", stat.S_IFIFO | 0o644, "FIFO refused"),
        ("dev", stat.S_IFCHR | 0o644, "device or other special file refused"),
    ],
)
def test_zip_escapes_and_special_files_are_refused(
    tmp_path: Path, name: str, mode: int, expected: str
) -> None:
    archive = make_zip(
        tmp_path / "bad.zip", {"pack.yaml": MANIFEST, name: b"/etc/passwd"}, {name: mode}
    )
    assert refusal(archive, tmp_path / "out") == f"{archive}: {name}: {expected}"
    assert not (tmp_path / "evil").exists()


def test_too_many_members(tmp_path: Path) -> None:
    def fill(tar: tarfile.TarFile) -> None:
        tar_member(tar, "pack.yaml", MANIFEST)
        for i in range(5):
            tar_member(tar, f"f{i}", b"x")

    limits = PackLimits(max_files=5)
    rendered = refusal(make_tgz(tmp_path / "many.tgz", fill), tmp_path / "out", limits)
    assert rendered.endswith("more than 5 members (6)")
    zipped = make_zip(tmp_path / "many.zip", {f"f{i}": b"x" for i in range(6)})
    assert refusal(zipped, tmp_path / "out", limits).endswith("more than 5 members (6)")
    # exactly at the cap is fine
    make_zip(tmp_path / "five.zip", {"pack.yaml": MANIFEST, **{f"f{i}": b"x" for i in range(4)}})
    assert extract_archive(tmp_path / "five.zip", tmp_path / "ok", limits) == tmp_path / "ok"


def test_declared_size_over_the_cap(tmp_path: Path) -> None:
    """A highly compressible file: tiny on disk, refused for what it would unpack to."""
    big = bytes(2 << 20)
    limits = PackLimits(max_bytes=1 << 20)
    archive = make_tgz(tmp_path / "bomb.tgz", lambda tar: tar_member(tar, "zeros", big))
    assert archive.stat().st_size < 64 << 10
    rendered = refusal(archive, tmp_path / "out", limits)
    assert rendered.endswith(f"declares {2 << 20} bytes, more than the cap of {1 << 20}")
    zipped = make_zip(tmp_path / "bomb.zip", {"pack.yaml": MANIFEST, "zeros": big})
    assert "more than the cap" in refusal(zipped, tmp_path / "out", limits)


def _lie_about_size(archive: Path, member: str, declared: int, crc: int | None = None) -> None:
    """Rewrite the uncompressed size (and the CRC) in the local header and central directory."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        local = zf.getinfo(member).header_offset
    assert data[local : local + 4] == b"PK\x03\x04"
    central = data.index(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(member)] != member.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", data, local + 22, declared)
    struct.pack_into("<I", data, central + 24, declared)
    if crc is not None:
        struct.pack_into("<I", data, local + 14, crc)
        struct.pack_into("<I", data, central + 16, crc)
    archive.write_bytes(bytes(data))


def test_zip_bomb_whose_header_lies_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "liar.zip", {"pack.yaml": MANIFEST, "zeros": bytes(4 << 20)})
    _lie_about_size(archive, "zeros", 100)
    with zipfile.ZipFile(archive) as zf:
        assert zf.getinfo("zeros").file_size == 100  # the lie is what a reader sees
    rendered = refusal(archive, tmp_path / "out", PackLimits(max_bytes=64 << 10))
    assert rendered == f"{archive}: not a readable archive: Bad CRC-32 for file 'zeros'"


def test_zip_bomb_with_a_consistent_lie_unpacks_only_what_it_declares(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "liar.zip", {"pack.yaml": MANIFEST, "zeros": bytes(4 << 20)})
    _lie_about_size(archive, "zeros", 100, crc=zlib.crc32(bytes(100)))
    root = extract_archive(archive, tmp_path / "out", PackLimits(max_bytes=64 << 10))
    assert (root / "zeros").stat().st_size == 100


def test_encrypted_zip_member_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "locked.zip", {"pack.yaml": MANIFEST})
    data = bytearray(archive.read_bytes())
    central = data.index(b"PK\x01\x02")
    for flags_at in (6, central + 8):  # general purpose flags, bit 0: encrypted
        data[flags_at] |= 1
    archive.write_bytes(bytes(data))
    assert refusal(archive, tmp_path / "out") == f"{archive}: pack.yaml: encrypted member refused"


def test_unknown_zip_compression_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "odd.zip", {"pack.yaml": MANIFEST})
    data = bytearray(archive.read_bytes())
    central = data.index(b"PK\x01\x02")
    for method_at in (8, central + 10):  # compression method 99: AES, which Python lacks
        struct.pack_into("<H", data, method_at, 99)
    archive.write_bytes(bytes(data))
    assert refusal(archive, tmp_path / "out") == (
        f"{archive}: pack.yaml: cannot read this member: That compression method is not supported"
    )


def test_actual_bytes_are_counted_whatever_the_header_says() -> None:
    """The guard behind the declared sizes: a stream longer than the budget is cut off."""
    out = io.BytesIO()
    with pytest.raises(ArchiveRefused, match="exceeds the archive's size cap"):
        copy_capped(io.BytesIO(bytes(1000)), out, 999, "zeros")
    assert len(out.getvalue()) <= 999
    out = io.BytesIO()
    assert copy_capped(io.BytesIO(bytes(1000)), out, 1000, "zeros") == 1000
    assert out.getvalue() == bytes(1000)


def test_truncated_archive_is_unreadable(tmp_path: Path) -> None:
    good = make_tgz(tmp_path / "good.tgz", lambda tar: tar_member(tar, "pack.yaml", MANIFEST))
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(good.read_bytes()[:40])
    assert "not a readable archive" in refusal(broken, tmp_path / "out")
    not_zip = tmp_path / "text.zip"
    not_zip.write_text("hello")
    assert "not a readable archive" in refusal(not_zip, tmp_path / "out")


def test_duplicate_and_conflicting_members(tmp_path: Path) -> None:
    twice = make_tgz(
        tmp_path / "twice.tgz",
        lambda tar: (tar_member(tar, "pack.yaml", MANIFEST), tar_member(tar, "pack.yaml", b"x")),
    )
    assert refusal(twice, tmp_path / "out").endswith("pack.yaml: appears twice in the archive")
    clash = make_tgz(
        tmp_path / "clash.tgz",
        lambda tar: (tar_member(tar, "a", b"file"), tar_member(tar, "a/b", b"under a file")),
    )
    assert refusal(clash, tmp_path / "out").endswith(
        "a/b: conflicts with another member of the archive"
    )


def test_neither_pack_yaml_nor_one_directory_at_the_top(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "two.zip", {"one/pack.yaml": MANIFEST, "two/x": b"x"})
    assert refusal(archive, tmp_path / "out").endswith(
        "no pack.yaml at the top and not exactly one top-level directory (found: one, two)"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [("./a/./b", "a/b"), ("a/", "a"), ("./", None), ("a//b", "a/b")],
)
def test_safe_member_path_normalises(name: str, expected: str | None) -> None:
    result = safe_member_path(name)
    assert (str(result) if result is not None else None) == expected
