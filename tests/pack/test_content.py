"""A pack's files on real directories: the listing's order, the digest every snapshot and
database row is named by, copies that verify themselves, and digests over validated bytes."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

import pytest

from attuned.errors import ValidationFailed
from attuned.pack.content import copy_files, digest, list_files
from attuned.pack.loader import load_pack
from attuned.yamlfile import keeping_reads, read_yaml
from tests.conftest import PackFactory

# a tree with every ordering question in it; its digest was computed by the os.walk-based
# listing this one replaced: snapshots and `managed_pack.digest` rows are named by it
GOLDEN = {
    "pack.yaml": "ref: golden\nversion: 1.0.0\n",
    "z.txt": "last at the top, first before any directory\n",
    "actions/run.sh": "#!/bin/sh\necho hi\n",
    "actions/run.yaml": "ref: golden.run\nentry_point: run.sh\n",
    "actions/lib/helper.py": "x = 1\n",
    "B/upper.txt": "capitals sort first\n",
    "docs/a-b.md": "dash\n",
    "docs/a.b/c.md": "dot dir\n",
    "__pycache__/x.pyc": "ignored\n",
    "actions/x.pyc": "ignored\n",
    ".git/HEAD": "ignored\n",
    ".hidden": "kept\n",
    "empty.txt": "",
}
GOLDEN_DIGEST = "4ff24641c5d93ee014860dcccb497e0598118dde466728abc21a3d43fd1f2975"


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    root = write_tree(tmp_path / "golden", GOLDEN)
    (root / "actions/run.sh").chmod(0o755)
    return root


def test_listing_order_and_digest_are_unchanged(golden: Path) -> None:
    assert [f.relpath for f in list_files(golden)] == [
        ".hidden",
        "empty.txt",
        "pack.yaml",
        "z.txt",
        "B/upper.txt",
        "actions/run.sh",
        "actions/run.yaml",
        "actions/lib/helper.py",
        "docs/a-b.md",
        "docs/a.b/c.md",
    ]
    assert [f.relpath for f in list_files(golden) if f.executable] == ["actions/run.sh"]
    assert digest(golden) == GOLDEN_DIGEST


def test_every_refusal_is_collected_in_walk_order(golden: Path, tmp_path: Path) -> None:
    os.symlink("/etc", golden / "actions" / "etc")
    os.mkfifo(golden / "B" / "fifo")
    os.link(golden / "z.txt", golden / "docs" / "z-again.txt")
    (golden / "bad\nname").mkdir()
    (golden / "bad\nname" / "inside.txt").write_text("one problem for the directory\n")
    with pytest.raises(ValidationFailed) as caught:
        list_files(golden)
    assert [(p.file, p.message) for p in caught.value.problems] == [
        (golden, "file name 'bad\\nname' has a control character; rename it"),
        (golden / "z.txt", "hard link refused"),
        (golden / "B" / "fifo", "not a regular file (device, FIFO or socket)"),
        (golden / "actions" / "etc", "symbolic link (to '/etc') refused"),
        (golden / "docs" / "z-again.txt", "hard link refused"),
    ]


def test_a_copy_returns_the_digest_of_what_it_wrote(golden: Path, tmp_path: Path) -> None:
    files = list_files(golden)
    old_umask = os.umask(0o077)  # the copy's modes are the pack's, not the umask's
    try:
        written = copy_files(golden, files, tmp_path / "copy")
    finally:
        os.umask(old_umask)
    assert written == GOLDEN_DIGEST == digest(tmp_path / "copy")
    assert list_files(tmp_path / "copy") == files
    assert (tmp_path / "copy/actions/run.sh").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "copy/pack.yaml").stat().st_mode & 0o777 == 0o644
    assert not (tmp_path / "copy/__pycache__").exists()


def test_a_copy_of_a_file_edited_since_the_listing_has_another_digest(
    golden: Path, tmp_path: Path
) -> None:
    files = list_files(golden)
    (golden / "docs/a-b.md").write_text("edited\n")  # same size, other bytes
    assert copy_files(golden, files, tmp_path / "copy") != GOLDEN_DIGEST


@pytest.mark.parametrize("swap", ["symlink", "fifo"])
def test_a_copy_never_follows_a_symlink_nor_waits_on_a_fifo_swapped_in(
    golden: Path, tmp_path: Path, swap: str
) -> None:
    files = list_files(golden)
    (tmp_path / "secret").write_text("not the pack's\n")
    (golden / "z.txt").unlink()
    if swap == "symlink":
        os.symlink(tmp_path / "secret", golden / "z.txt")
    else:
        os.mkfifo(golden / "z.txt")
    outcome: list[BaseException | str] = []

    def copy() -> None:
        try:
            outcome.append(copy_files(golden, files, tmp_path / "copy"))
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=copy, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert outcome, "the copy hung"
    assert isinstance(outcome[0], OSError)
    assert outcome[0].errno == (errno.ELOOP if swap == "symlink" else errno.EINVAL)


def test_the_digest_names_the_bytes_that_were_validated(golden: Path) -> None:
    with keeping_reads() as reads:
        read_yaml(golden / "pack.yaml")
    (golden / "pack.yaml").write_text("ref: golden\nversion: 6.6.6\n")  # after the check
    files = list_files(golden)
    assert digest(golden, files, reads) == GOLDEN_DIGEST, "the checked bytes, not the new"
    assert digest(golden, files) != GOLDEN_DIGEST
    assert reads == {str(golden / "pack.yaml"): GOLDEN["pack.yaml"].encode()}


def test_reads_are_kept_only_inside_the_block(golden: Path) -> None:
    with keeping_reads() as reads:
        pass
    read_yaml(golden / "pack.yaml")
    assert reads == {}


def test_load_pack_digests_what_it_read(make_pack: PackFactory) -> None:
    pack_dir = make_pack(
        files={
            "actions/a.yaml": "ref: hello.a\nrunner_type: shell\nentry_point: a.sh\n",
            "actions/a.sh": "echo a\n",
            "requirements.txt": "requests==2.31.0\n",
        }
    )
    pack = load_pack(pack_dir)
    assert pack.digest == digest(pack_dir)


@pytest.mark.parametrize(
    "entry_point",
    [
        "a.sh",  # beside the component file
        "lib/run.sh",  # from the pack root (Attune: relative to actions/, attuned: either)
        "./a.sh",  # not a plain path: asked of the file system, as before
        "sub/../a.sh",
    ],
)
def test_entry_points_found_by_name_or_on_disk(make_pack: PackFactory, entry_point: str) -> None:
    pack_dir = make_pack(
        files={
            "actions/a.yaml": f"ref: hello.a\nrunner_type: shell\nentry_point: {entry_point}\n",
            "actions/a.sh": "echo a\n",
            "actions/sub/keep.txt": "\n",
            "lib/run.sh": "echo run\n",
        }
    )
    assert [c.ref for c in load_pack(pack_dir).components] == ["hello.a"]


def test_an_entry_point_through_an_ignored_symlink_still_points_outside(
    make_pack: PackFactory, tmp_path: Path
) -> None:
    """`.git` is not listed (so not walked), so a plain name through it is not among the
    pack's files: the file system is asked, and the symlink found, as before."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.sh").write_text("echo outside\n")
    pack_dir = make_pack(
        files={"actions/a.yaml": "ref: hello.a\nrunner_type: shell\nentry_point: .git/x.sh\n"}
    )
    os.symlink(tmp_path / "elsewhere", pack_dir / "actions" / ".git")
    with pytest.raises(ValidationFailed) as caught:
        load_pack(pack_dir)
    assert [p.message for p in caught.value.problems] == ["'.git/x.sh' points outside the pack"]


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (5 << 19) + 3])
def test_a_copy_of_any_size_is_whole(tmp_path: Path, size: int) -> None:
    """Around the read size (1 MiB): a short read ends a file, a full one reads on."""
    source = write_tree(tmp_path / "src", {"pack.yaml": "ref: big\n"})
    (source / "blob.bin").write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    written = copy_files(source, list_files(source), tmp_path / "copy")
    assert (tmp_path / "copy/blob.bin").read_bytes() == (source / "blob.bin").read_bytes()
    assert written == digest(source) == digest(tmp_path / "copy") == reference_digest(source)


def reference_digest(root: Path) -> str:
    """The digest's definition, spelled out: path, executable bit, size, content."""
    hasher = hashlib.sha256()
    for item in list_files(root):
        hasher.update(f"{item.relpath}\0{int(item.executable)}\0{item.size}\0".encode())
        hasher.update((root / item.relpath).read_bytes())
    return hasher.hexdigest()
