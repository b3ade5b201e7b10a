"""Sources read in place, without snapshots: what `attuned plan` scans.

The daemon snapshots every candidate into the state directory before it plans; a preview must
write nothing, so pack folders are loaded where they are, and archives and git trees are
unpacked into a private temporary directory (never under the state directory) that is removed
at once. Each loaded `Pack` is kept in memory for the component diff.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from attuned.errors import AttunedError, Problem, ValidationFailed
from attuned.pack.loader import Pack, load_pack
from attuned.pack.manifest import MANIFEST_NAME
from attuned.reconcile.model import (
    Candidate,
    Desired,
    InvalidCandidate,
    Requirement,
    SourceState,
)
from attuned.reconcile.sources.directory import ignored
from attuned.reconcile.sources.entries import problems_of, rebased, ref_hint
from attuned.store.archive import extract_archive, is_archive

if TYPE_CHECKING:  # pygit2 costs 11 MiB of RSS: imported only when a git source is read
    import pygit2

    from attuned.settings.git import GitSourceConfig

# what reading one entry in place can fail with, short of a bug
ENTRY_ERRORS = (ValidationFailed, OSError, UnicodeError)
_HEX = re.compile(r"^[0-9a-fA-F]{7,40}$")


@dataclass(frozen=True)
class Scanned:
    """One source read without snapshots: what the planner needs, plus the loaded packs
    (by entry) that the component diff compares."""

    state: SourceState
    candidates: tuple[Candidate, ...] = ()
    invalid: tuple[InvalidCandidate, ...] = ()
    packs: Mapping[str, Pack] = field(default_factory=dict)
    revision: str | None = None  # the git commit read; None for a folder

    @classmethod
    def unreadable(cls, name: str, prune: bool, error: str) -> Scanned:
        return cls(SourceState(name, readable=False, prune=prune, error=error))


def candidate_of(source: str, entry: str, pack: Pack, revision: str | None = None) -> Candidate:
    """As `sources.entries.candidate_of` makes it, from a pack loaded in place."""
    manifest = pack.manifest
    return Candidate(
        ref=manifest.ref,
        version=manifest.version,
        digest=pack.digest,
        source=source,
        snapshot=pack.path,
        entry=entry,
        source_revision=revision,
        requires=tuple(Requirement(d.ref, d.version) for d in manifest.dependencies),
    )


def scan_directory(name: str, path: Path, *, prune: bool) -> Scanned:
    """A watched folder, read as `DirectorySource.scan` reads it, but in place: each pack
    directory loaded where it is, each archive unpacked into a private temporary directory."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return Scanned.unreadable(name, prune, f"{path} does not exist")
    except OSError as exc:
        return Scanned.unreadable(name, prune, f"cannot stat {path}: {exc.strerror or exc}")
    if not stat.S_ISDIR(info.st_mode):
        return Scanned.unreadable(name, prune, f"{path} is not a directory")
    try:
        names = sorted(n for n in os.listdir(path) if not ignored(n))
    except OSError as exc:
        return Scanned.unreadable(name, prune, f"cannot list {path}: {exc.strerror or exc}")
    candidates: list[Candidate] = []
    invalid: list[InvalidCandidate] = []
    packs: dict[str, Pack] = {}
    for entry in names:
        result = _read_folder_entry(name, entry, path / entry)
        if isinstance(result, InvalidCandidate):
            invalid.append(result)
        elif result is not None:
            candidates.append(candidate_of(name, entry, result))
            packs[entry] = result
    state = SourceState(name, readable=True, prune=prune)
    return Scanned(state, tuple(candidates), tuple(invalid), packs)


def _read_folder_entry(source: str, entry: str, path: Path) -> Pack | InvalidCandidate | None:
    """One entry of a folder: a pack, an invalid entry, or None (not a pack)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _invalid(source, entry, problems_of(exc, path), None)
    if stat.S_ISDIR(info.st_mode):
        if not os.path.lexists(path / MANIFEST_NAME):
            return None
        try:
            return load_pack(path)
        except ENTRY_ERRORS as exc:
            return _invalid(source, entry, problems_of(exc, path), ref_hint(path / MANIFEST_NAME))
    if stat.S_ISREG(info.st_mode) and is_archive(entry):
        return _read_archive(source, entry, path)
    return None


def _read_archive(source: str, entry: str, archive: Path) -> Pack | InvalidCandidate:
    with private_dir() as scratch:
        extracted = scratch / "archive"
        root: Path | None = None
        try:
            root = extract_archive(archive, extracted)
            return load_pack(root)
        except ENTRY_ERRORS as exc:
            problems = [rebased(p, extracted, archive) for p in problems_of(exc, archive)]
            hint = ref_hint(root / MANIFEST_NAME) if root is not None else None
            return _invalid(source, entry, problems, hint)


def _invalid(
    source: str, entry: str, problems: Sequence[Problem], hint: str | None
) -> InvalidCandidate:
    return InvalidCandidate(source, entry, "", tuple(str(p) for p in problems), hint)


@contextmanager
def private_dir() -> Iterator[Path]:
    """A temporary directory of this process only (never under the state directory),
    removed when the block ends."""
    scratch = Path(tempfile.mkdtemp(prefix="attuned-plan-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- git sources -----------------------------------------------------------------------------


class RevisionError(ValidationFailed):
    """`--revision` names nothing the source's server has."""


def git_cache_path(cache_root: Path, source: GitSourceConfig) -> Path:
    """Where the daemon keeps this source's bare cache (as `SourceSet.configure` and
    `GitSource` name it)."""
    return cache_root / source.name / f"{source.name}.git"


def scan_git_cached(source: GitSourceConfig, cache: Path, *, prune: bool) -> Scanned:
    """The packs of the commit the daemon last fetched (`refs/attuned/current` of its cache),
    without the network; unreadable (so nothing of it is pruned) when it has none yet."""
    import pygit2

    from attuned.reconcile.sources.git_cache import CURRENT, recorded_url

    pygit2.settings.owner_validation = False
    try:
        repo = pygit2.Repository(str(cache))
    except pygit2.GitError:
        return Scanned.unreadable(
            source.name, prune, f"not fetched yet: no git cache at {cache} (the daemon polls it)"
        )
    if recorded_url(repo) != source.url:
        return Scanned.unreadable(
            source.name, prune, f"the git cache at {cache} is of another URL; the daemon refetches"
        )
    current = repo.references.get(CURRENT)
    if current is None:
        return Scanned.unreadable(
            source.name, prune, f"not fetched yet: the git cache at {cache} holds no commit"
        )
    try:
        return scan_git_commit(source, repo, current.peel(pygit2.Commit).id, prune=prune)
    except pygit2.GitError as exc:  # a damaged cache: the daemon would fetch it afresh
        return Scanned.unreadable(source.name, prune, f"the git cache at {cache}: {exc}")


def fetch_revision(source: GitSourceConfig, cache: Path, revision: str) -> pygit2.Oid:
    """The commit `revision` (a sha, branch or tag) names, as a pygit2 Oid. A sha the cache
    holds is used as is; anything else is fetched into the cache first (every branch and
    tag of the server, as a short commit pin is): the cache is a cache, rebuilt at will."""
    import pygit2

    from attuned.reconcile.sources import git_hostkeys
    from attuned.reconcile.sources.git_cache import Cache
    from attuned.reconcile.sources.git_remote import GitRemote, RemoteError

    pygit2.settings.owner_validation = False
    try:
        known = _cached_commit(Cache(cache, source.url).open(), revision)
        if known is not None:
            return known
        creds = source.credentials
        if creds is not None and creds.known_hosts_file is not None:
            git_hostkeys.register(source.name, creds.known_hosts_file, cache.parent / ".ssh-home")
        GitRemote(source, cache).fetch_everything()
        found = _resolve(pygit2.Repository(str(cache)), revision)
    except (RemoteError, pygit2.GitError, OSError) as exc:
        raise AttunedError(f"cannot fetch {revision!r} of source {source.name!r}: {exc}") from None
    if found is None:
        raise RevisionError(
            [
                Problem(
                    None,
                    f"{revision!r} names no commit, branch or tag of {source.shown_url}",
                    field="--revision",
                )
            ]
        )
    return found


def _cached_commit(repo: pygit2.Repository, revision: str) -> pygit2.Oid | None:
    """A commit the cache holds by (short) sha; names are always asked of the server."""
    import pygit2

    if not _HEX.match(revision):
        return None
    try:
        found = repo.get(revision)
    except (pygit2.GitError, ValueError, KeyError):
        return None
    return found.id if isinstance(found, pygit2.Commit) else None


def _resolve(repo: pygit2.Repository, revision: str) -> pygit2.Oid | None:
    import pygit2

    try:
        return repo.revparse_single(revision).peel(pygit2.Commit).id
    except (pygit2.GitError, KeyError, ValueError, pygit2.InvalidSpecError):
        return None


def scan_git_commit(
    source: GitSourceConfig, repo: pygit2.Repository, commit: pygit2.Oid, *, prune: bool
) -> Scanned:
    """The packs of `commit`, each exported into a private directory and loaded there (as
    `PackExporter` does, without its snapshot); unreadable when `path` holds no pack."""
    from attuned.reconcile.sources.git_export import ExportError, pack_trees

    try:
        trees = pack_trees(repo, commit, source.path)
    except ExportError as exc:
        return Scanned.unreadable(source.name, prune, f"{source.shown_url}: {exc}")
    revision = str(commit)
    candidates: list[Candidate] = []
    invalid: list[InvalidCandidate] = []
    packs: dict[str, Pack] = {}
    with private_dir() as scratch:
        for index, tree in enumerate(trees):
            (scratch / str(index)).mkdir()
            exported = scratch / str(index) / (Path(tree.entry).name or "pack")
            result = _export(source.name, repo, tree.entry, tree.tree, exported)
            if isinstance(result, InvalidCandidate):
                invalid.append(result)
            else:
                candidates.append(candidate_of(source.name, tree.entry, result, revision))
                packs[tree.entry] = result
    state = SourceState(source.name, readable=True, prune=prune)
    return Scanned(state, tuple(candidates), tuple(invalid), packs, revision)


def _export(
    source: str, repo: pygit2.Repository, entry: str, tree: pygit2.Oid, exported: Path
) -> Pack | InvalidCandidate:
    from pygit2.enums import CheckoutStrategy

    strategy = CheckoutStrategy.FORCE | CheckoutStrategy.DONT_UPDATE_INDEX
    try:
        repo.checkout_tree(  # type: ignore[no-untyped-call]  # untyped in pygit2
            repo[tree], directory=str(exported), strategy=strategy
        )
        return load_pack(exported)
    except ENTRY_ERRORS as exc:
        where = Path(entry)  # name files as the repository does, not the scratch copy
        problems = [rebased(p, exported, where) for p in problems_of(exc, exported)]
        return _invalid(source, entry, problems, ref_hint(exported / MANIFEST_NAME))


def desired_of(scans: Sequence[Scanned]) -> Desired:
    """The planner's input, sources in config order (the first wins a conflict)."""
    return Desired(
        candidates=tuple(c for s in scans for c in s.candidates),
        invalid=tuple(i for s in scans for i in s.invalid),
        sources=tuple(s.state for s in scans),
    )


def with_origin_hints(desired: Desired, origins: Mapping[str, str]) -> Desired:
    """Invalid entries whose pack.yaml names no ref get the ref registered from that entry
    (`origins`: `source:entry` -> ref), as a daemon that saw the entry before knows it."""
    invalid = tuple(
        i
        if i.ref_hint is not None or f"{i.source}:{i.entry}" not in origins
        else InvalidCandidate(
            i.source, i.entry, i.digest, i.problems, origins[f"{i.source}:{i.entry}"]
        )
        for i in desired.invalid
    )
    return Desired(desired.candidates, invalid, desired.sources)
