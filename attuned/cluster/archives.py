"""Pack content in the database, so a follower can serve a pack from the database alone.

An archive is keyed by the pack digest and built deterministically (sorted names, no times, no
owners, modes 0644/0755), so the same content always gives the same bytes. Extraction reuses
the watched-folder extractor (regular files and directories only, no escapes, capped), then
the digest of what landed must equal the key: that check, not the archive, is the proof.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
from pathlib import Path

from sqlalchemy import delete, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from attuned.errors import AttunedError, ValidationFailed
from attuned.pack.content import PackFile, digest, list_files
from attuned.pack.limits import PackLimits
from attuned.pack.manifest import MANIFEST_NAME
from attuned.store.archive import extract_archive
from attuned.store.models import ManagedPack, PackArchive, utcnow

NOTIFY_CHANNEL = "attuned_packs"
_GZIP_LEVEL = 6
_MAX_REASON = 300  # the extractor lists whole directories; a log line needs the start


class ArchiveTooLarge(AttunedError):
    """The pack is bigger than the archive cap: it cannot travel to followers."""


class ArchiveRejected(AttunedError):
    """An archive from the database is unsafe, unreadable or not the content its digest names."""


def pack_archive(pack_dir: Path, files: list[PackFile] | None = None) -> bytes:
    """A gzip'd tar of exactly the pack's regular files; the same content gives the same bytes."""
    files = list_files(pack_dir) if files is None else files
    raw = io.BytesIO()
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL, mtime=0)
    with gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in sorted(files, key=lambda f: f.relpath):
            info = tarfile.TarInfo(item.relpath)
            info.size = item.size
            info.mode = 0o755 if item.executable else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with (pack_dir / item.relpath).open("rb") as handle:
                tar.addfile(info, handle)
    return raw.getvalue()


def store_archive(session: Session, pack_dir: Path, pack_digest: str, *, max_bytes: int) -> bool:
    """Store the archive of `pack_dir` under `pack_digest` unless there; True when inserted.

    Runs inside the caller's transaction, so the archive commits with the pack row or not at
    all. The directory must have `pack_digest`: a wrong key would poison every follower.
    """
    if _archive_exists(session, pack_digest):
        return False
    files = list_files(pack_dir)
    size = sum(f.size for f in files)
    if size > max_bytes:
        raise ArchiveTooLarge(
            f"{pack_dir}: {size} bytes of files, more than the archive cap of {max_bytes}"
        )
    if digest(pack_dir, files) != pack_digest:
        raise AttunedError(f"{pack_dir} does not have digest {pack_digest}; not archived")
    data = pack_archive(pack_dir, files)
    if len(data) > max_bytes:
        raise ArchiveTooLarge(
            f"{pack_dir}: {len(data)} bytes compressed, more than the archive cap of {max_bytes}"
        )
    insert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
    statement = (
        insert(PackArchive)
        .values(
            digest=pack_digest,
            size=size,
            compressed_size=len(data),
            data=data,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["digest"])
        .returning(col(PackArchive.digest))  # rowcount of an INSERT is not reliable
    )
    return session.connection().execute(statement).scalar_one_or_none() is not None


def load_archive(session: Session, pack_digest: str) -> bytes | None:
    row = session.exec(
        select(col(PackArchive.data)).where(col(PackArchive.digest) == pack_digest)
    ).first()
    return None if row is None else bytes(row)


def unpack_verified(
    data: bytes, target: Path, pack_digest: str, *, limits: PackLimits | None = None
) -> None:
    """Extract `data` into the new directory `target` and prove it is the pack `pack_digest`.

    On any failure `target` is removed: a caller never sees an unverified tree.
    """
    if target.exists():
        raise FileExistsError(f"{target} exists; unpack into a new directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = target.parent / f".{target.name}.tar.gz"
    try:
        archive.write_bytes(data)
        try:
            root = extract_archive(archive, target, limits)
        except ValidationFailed as exc:
            why = "; ".join(
                f"{p.field}: {p.message}" if p.field else p.message for p in exc.problems
            )
            why = why if len(why) <= _MAX_REASON else f"{why[:_MAX_REASON]}..."
            raise ArchiveRejected(f"archive {pack_digest[:16]} refused: {why}") from None
        if root != target:
            raise ArchiveRejected(f"archive {pack_digest[:16]} has no {MANIFEST_NAME} at the top")
        files = list_files(target)
        stray = _stray_entries(target, files)
        if stray:
            raise ArchiveRejected(
                f"archive {pack_digest[:16]} holds what a pack cannot: {', '.join(stray[:5])}"
            )
        actual = digest(target, files)
        if actual != pack_digest:
            raise ArchiveRejected(
                f"archive {pack_digest[:16]} unpacks to content with digest {actual[:16]}"
            )
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        archive.unlink(missing_ok=True)


def prune_archives(session: Session, keep: set[str]) -> int:
    """Delete archives that no pack row references and that are not in `keep`; return how many.

    The pack rows are read by the DELETE itself, so a registration committing meanwhile never
    loses its archive (a `keep` read earlier could miss it).
    """
    statement = delete(PackArchive).where(
        col(PackArchive.digest).not_in(select(col(ManagedPack.digest)))
    )
    if keep:
        statement = statement.where(col(PackArchive.digest).not_in(keep))
    return session.connection().execute(statement).rowcount


def announce(session: Session, payload: str) -> None:
    """Tell listening followers that packs changed; PostgreSQL delivers it only at commit."""
    if _dialect(session) == "postgresql":
        session.connection().execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": NOTIFY_CHANNEL, "payload": payload},
        )


def _archive_exists(session: Session, pack_digest: str) -> bool:
    found = session.exec(
        select(col(PackArchive.digest)).where(col(PackArchive.digest) == pack_digest)
    ).first()
    return found is not None


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _stray_entries(target: Path, files: list[PackFile]) -> list[str]:
    """What the extraction wrote that the pack digest does not cover (ignored names, empty dirs).

    Without this check a tampered archive could add `__pycache__/x.pyc` and still verify.
    """
    listed = {f.relpath for f in files}
    parents = {p.as_posix() for f in files for p in Path(f.relpath).parents}
    stray: list[str] = []
    for dirpath, dirnames, filenames in os.walk(target):
        for name in dirnames + filenames:
            rel = (Path(dirpath) / name).relative_to(target).as_posix()
            if rel not in (parents if name in dirnames else listed):
                stray.append(rel)
    return sorted(stray)
