"""The provenance of each activation, and the check that the store still holds it.

A record says where a served version came from (source, URL without credentials, commit,
tree, signer), exactly what it was (content digest, sha256 of each file), how it was tested
(run, summary, Python environment) and where and when it was activated. The registry writes
it in the activation's transaction; `attuned show --provenance` prints it, and `attuned
verify-store` hashes the served files again and compares (a drift check with no daemon).
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from attuned.errors import EnvironmentFailed, ValidationFailed
from attuned.pack import content
from attuned.pack.content import PackFile
from attuned.settings.git import UNSIGNED, redact
from attuned.store.models import ActivationProvenance, aware

if TYPE_CHECKING:
    from attuned.envs.python import PythonEnvironments
    from attuned.results import PackTestResult
    from attuned.store.registered_packs import RegisteredPack


@dataclass(frozen=True)
class Provenance:
    """Where a registration came from: a path by hand, or a daemon source's entry.

    `source_type` and `source_url` become Attune's `pack.source_type`/`source_url`
    (`local_directory`, `local_archive` or `git`; a URL without credentials)."""

    origin: str
    source: str | None = None  # None: registered by hand (never pruned by the daemon)
    source_revision: str | None = None
    source_type: str = "local_directory"
    source_url: str | None = None  # default: `origin`
    source_tree: str | None = None  # a git commit's tree id
    signer: str | None = None  # who signed the commit (key fingerprint and principal)


_CHUNK = 1 << 20


@dataclass(frozen=True)
class Captured:
    """What the record needs from the files, read before the activation's transaction
    (hashing inside it would hold the database's write lock for as long)."""

    files: dict[str, str]
    env_lock: str | None


def file_sha256(path: str) -> str:
    hasher = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        while chunk := os.read(fd, _CHUNK):
            hasher.update(chunk)
    finally:
        os.close(fd)
    return hasher.hexdigest()


def file_digests(pack_dir: Path, files: Sequence[PackFile]) -> dict[str, str]:
    """relative path -> sha256 of each listed file (the files the content digest covers)."""
    root = str(pack_dir)
    return {item.relpath: file_sha256(f"{root}/{item.relpath}") for item in files}


def environment_key(environments: PythonEnvironments | None, pack_dir: Path) -> str | None:
    """The key of the Python environment the pack's tests use (a hash of the interpreter,
    the normalized requirements and the index); None without requirements."""
    if environments is None:
        return None
    try:
        return environments.pack_keys([pack_dir]).get(pack_dir)
    except (OSError, EnvironmentFailed):  # the interpreter is gone: the tests did not use it
        return None


def capture(
    version_dir: Path,
    files: Sequence[PackFile],
    environments: PythonEnvironments | None,
) -> Captured:
    """`environments`: None when no tests ran (no environment was used)."""
    return Captured(file_digests(version_dir, files), environment_key(environments, version_dir))


def record(
    session: Session,
    pack: RegisteredPack,
    origin: Provenance,
    captured: Captured,
    result: PackTestResult | None,
    test_run_id: int | None,
) -> ActivationProvenance:
    """Add the record of this activation to the caller's transaction."""
    signer = origin.signer
    if signer is None and origin.source_type == "git":
        signer = UNSIGNED
    row = ActivationProvenance(
        pack_ref=pack.ref,
        version=pack.version,
        digest=pack.digest,
        source=origin.source,
        source_type=origin.source_type,
        source_url=redact(origin.source_url or origin.origin),
        source_revision=origin.source_revision,
        source_tree=origin.source_tree,
        signer=signer,
        files=captured.files,
        test_run_id=test_run_id,
        test_status=result.status.value if result is not None else None,
        tests_passed=result.passed if result is not None else None,
        tests_total=result.total_tests if result is not None else None,
        env_lock=captured.env_lock,
        host=socket.gethostname(),
    )
    session.add(row)
    return row


def latest(session: Session, ref: str) -> ActivationProvenance | None:
    """The newest record of `ref`: the version activated last."""
    query = (
        select(ActivationProvenance)
        .where(ActivationProvenance.pack_ref == ref)
        .order_by(col(ActivationProvenance.id).desc())
        .limit(1)
    )
    return session.exec(query).first()


def latest_of(session: Session, refs: Sequence[str]) -> dict[str, ActivationProvenance]:
    """The newest record of each of `refs` that has one."""
    if not refs:
        return {}
    newest = (
        select(func.max(ActivationProvenance.id))
        .where(col(ActivationProvenance.pack_ref).in_(refs))
        .group_by(col(ActivationProvenance.pack_ref))
    )
    query = select(ActivationProvenance).where(col(ActivationProvenance.id).in_(newest))
    return {row.pack_ref: row for row in session.exec(query)}


def as_dict(row: ActivationProvenance) -> dict[str, Any]:
    """The record as `show --provenance --json` prints it."""
    activated = aware(row.activated_at)
    return {
        "id": row.id,
        "pack": row.pack_ref,
        "version": row.version,
        "digest": row.digest,
        "source": row.source,
        "source_type": row.source_type,
        "source_url": row.source_url,
        "commit": row.source_revision,
        "tree": row.source_tree,
        "signer": row.signer,
        "files": dict(sorted(row.files.items())),
        "test_run_id": row.test_run_id,
        "tests": None
        if row.test_status is None
        else {"status": row.test_status, "passed": row.tests_passed, "total": row.tests_total},
        "env_lock": row.env_lock,
        "host": row.host,
        "activated_at": activated.isoformat().replace("+00:00", "Z"),
    }


# -- the drift check --------------------------------------------------------------------------


@dataclass
class Drift:
    """How a served directory differs from its record; nothing in any list: it matches."""

    missing: list[str] = field(default_factory=list)  # recorded, not served
    extra: list[str] = field(default_factory=list)  # served, not recorded
    changed: list[str] = field(default_factory=list)  # served with other content
    refused: list[str] = field(default_factory=list)  # what no pack may hold (a symlink ...)
    digest: str | None = None  # the served content's digest, when the files could be listed

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.changed or self.refused)


def drift(served_dir: Path, recorded: dict[str, str]) -> Drift:
    """Hash every file under `served_dir` (as a pack's files are listed) against `recorded`."""
    found = Drift()
    try:
        files = content.list_files(served_dir)
    except ValidationFailed as exc:  # a symlink or a device slipped in: name each
        found.refused = [_relative(served_dir, p.file) + f": {p.message}" for p in exc.problems]
        return found
    served = {item.relpath: item for item in files}
    found.missing = sorted(set(recorded) - set(served))
    found.extra = sorted(set(served) - set(recorded))
    found.changed = sorted(
        rel
        for rel in set(served) & set(recorded)
        if file_sha256(f"{served_dir}/{rel}") != recorded[rel]
    )
    found.digest = content.digest(served_dir, files)
    return found


def _relative(root: Path, path: Path | None) -> str:
    if path is None:
        return "."
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)
