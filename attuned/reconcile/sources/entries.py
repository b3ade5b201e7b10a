"""What every source does with one entry: a Candidate from a snapshot, or the problems and
the ref hint of an entry that is not a valid pack."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from attuned.errors import Problem, ValidationFailed
from attuned.reconcile.model import Candidate, Requirement
from attuned.reconcile.snapshot_copy import SnapshotChanged
from attuned.reconcile.snapshots import Snapshot
from attuned.yamlfile import read_yaml

# a broken pack.yaml may still name its pack on a line of its own
_REF_LINE = re.compile(r"^ref:\s*[\"']?([a-z][a-z0-9_-]*)[\"']?\s*(?:#.*)?$", re.MULTILINE)


def candidate_of(
    source: str, entry: str, taken: Snapshot, revision: str | None = None
) -> Candidate:
    summary = taken.summary
    return Candidate(
        ref=summary.ref,
        version=summary.version,
        digest=summary.digest,
        source=source,
        snapshot=taken.path,
        entry=entry,
        source_revision=revision,
        requires=tuple(Requirement(ref, version) for ref, version in summary.requires),
    )


def problems_of(exc: Exception, pack_dir: Path) -> list[Problem]:
    """What went wrong with one entry, each naming a file where one is known."""
    if isinstance(exc, ValidationFailed):
        return list(exc.problems)
    if isinstance(exc, SnapshotChanged):
        return [Problem(exc.source_dir, exc.reason)]
    if isinstance(exc, UnicodeError):
        return [Problem(pack_dir, "a file name is not UTF-8 text; rename it")]
    if isinstance(exc, OSError) and exc.filename:
        return [Problem(Path(os.fsdecode(exc.filename)), exc.strerror or str(exc))]
    return [Problem(pack_dir, str(exc))]


def rebased(problem: Problem, old: Path, new: Path) -> Problem:
    """Name a file inside an extracted archive as `<archive>/<member>`, not as a scratch path."""
    if problem.file is None or not problem.file.is_relative_to(old):
        return problem
    return replace(problem, file=new / problem.file.relative_to(old))


def ref_hint(manifest: Path) -> str | None:
    """The `ref:` of a pack.yaml that is otherwise invalid, so its served version is kept."""
    try:
        data = read_yaml(manifest)
    except ValidationFailed:
        data = None
    if isinstance(data, dict):
        ref = data.get("ref")
        return ref if isinstance(ref, str) else None
    try:
        match = _REF_LINE.search(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return match[1] if match else None
