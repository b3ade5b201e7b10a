"""The packs of one commit: found in its tree, exported one folder at a time, snapshotted.

A pack folder with the same git tree id as at the previous commit has the same content, so its
earlier result is reused without exporting anything: a commit that changes one pack of twenty
exports one. An export is `checkout_tree` of the pack's own tree into a scratch folder (the
cache stays bare), read into a content-addressed snapshot, then deleted. The pack's tree is
measured against the caps first, from object headers, so a huge blob is never written out.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pygit2
from pygit2.enums import CheckoutStrategy

from attuned.errors import ValidationFailed
from attuned.pack.limits import PackLimits, check_sizes
from attuned.pack.manifest import MANIFEST_NAME
from attuned.reconcile.model import Candidate, InvalidCandidate
from attuned.reconcile.snapshot_copy import SnapshotChanged
from attuned.reconcile.snapshots import Outcome, SnapshotStore

# shared with the folder source: how one entry's failure is told
from attuned.reconcile.sources.entries import candidate_of, problems_of, rebased, ref_hint

Result = Candidate | InvalidCandidate
_EXPORT = CheckoutStrategy.FORCE | CheckoutStrategy.DONT_UPDATE_INDEX
_ENTRY_ERRORS = (ValidationFailed, SnapshotChanged, OSError, UnicodeError)
_COUNTED = {Outcome.MADE: "snapshots_made", Outcome.REUSED: "snapshots_reused"}


class ExportError(Exception):
    """The commit has no packs where the source's `path` says: know nothing, prune nothing."""


@dataclass(frozen=True)
class PackTree:
    entry: str  # the folder's path in the repository; "." for the root
    tree: pygit2.Oid


def pack_trees(repo: pygit2.Repository, commit: pygit2.Oid, path: str) -> list[PackTree]:
    """`path` is one pack (it holds pack.yaml) or a folder whose children are packs."""
    found = repo.get(commit)
    if not isinstance(found, pygit2.Commit):
        raise ExportError(f"commit {commit} is missing from the cache; it is fetched again")
    root = found.tree
    where = f"'{path}'" if path else "the repository root"
    try:
        top = root[path] if path else root
    except KeyError:
        raise ExportError(f"{where} does not exist at commit {commit}") from None
    if not isinstance(top, pygit2.Tree):
        raise ExportError(f"{where} is a file, not a folder, at commit {commit}")
    if MANIFEST_NAME in top:
        return [PackTree(path or ".", top.id)]
    packs = [
        PackTree(f"{path}/{child.name}" if path else str(child.name), child.id)
        for child in top
        if isinstance(child, pygit2.Tree) and MANIFEST_NAME in child
    ]
    if not packs:
        # an empty result would prune every pack of this source: a wrong `path` must not
        raise ExportError(
            f"no pack in {where} at commit {commit} (a pack is a folder holding {MANIFEST_NAME})"
        )
    return packs


class PackExporter:
    """Turns the pack folders of a commit into candidates, reusing unchanged ones."""

    def __init__(self, source: str, snapshots: SnapshotStore, work_dir: Path) -> None:
        self.source = source
        self.work_dir = work_dir
        self._snapshots = snapshots
        self._seen: dict[tuple[str, pygit2.Oid], Result] = {}
        self._refs: dict[str, str] = {}  # entry -> the ref it last had: a hint when it breaks
        self._limits: PackLimits | None = None  # what `_seen` was judged under

    def read(
        self, repo: pygit2.Repository, commit: pygit2.Oid, path: str
    ) -> tuple[list[Candidate], list[InvalidCandidate], dict[str, int]]:
        """Candidates and invalid entries of `commit`; raises ExportError when it has none."""
        trees = pack_trees(repo, commit, path)
        stats = dict.fromkeys(("entries", "exported", "unchanged", *_COUNTED.values()), 0)
        stats["entries"] = len(trees)
        seen: dict[tuple[str, pygit2.Oid], Result] = {}
        revision = str(commit)
        if self._limits != self._snapshots.limits:  # a reload changed the caps: judge again
            self._limits, self._seen = self._snapshots.limits, {}
        for pack in trees:
            key = (pack.entry, pack.tree)
            result = self._seen.get(key)
            if result is not None and _still_there(result):
                stats["unchanged"] += 1
            else:
                result, outcome = self._export(repo, pack)
                stats["exported"] += 1
                if outcome is not None:
                    stats[_COUNTED[outcome]] += 1
            seen[key] = result
        self._seen = seen
        candidates: list[Candidate] = []
        invalid: list[InvalidCandidate] = []
        for result in seen.values():
            if isinstance(result, Candidate):
                candidates.append(replace(result, source_revision=revision))
            else:
                invalid.append(result)
        self._refs = {c.entry: c.ref for c in candidates} | {
            i.entry: i.ref_hint for i in invalid if i.ref_hint is not None
        }
        return candidates, invalid, stats

    def clear_scratch(self) -> None:
        """Remove exports a crash left behind (no export runs while the source is locked)."""
        shutil.rmtree(self.work_dir / self.source, ignore_errors=True)

    def _export(self, repo: pygit2.Repository, pack: PackTree) -> tuple[Result, Outcome | None]:
        parent = self.work_dir / self.source
        parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=parent))
        exported = scratch / (Path(pack.entry).name or "pack")
        try:
            measure_tree(repo, pack.tree, exported, self._snapshots.limits)
            repo.checkout_tree(  # type: ignore[no-untyped-call]  # untyped in pygit2
                repo[pack.tree], directory=str(exported), strategy=_EXPORT
            )
            taken = self._snapshots.capture(exported, use_cache=False)
        except _ENTRY_ERRORS as exc:
            # name files as the repository does (`packs/hello/pack.yaml`), not the scratch copy
            where = Path(pack.entry)
            problems = tuple(str(rebased(p, exported, where)) for p in problems_of(exc, exported))
            hint = ref_hint(exported / MANIFEST_NAME) or self._refs.get(pack.entry)
            return InvalidCandidate(self.source, pack.entry, "", problems, hint), None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return candidate_of(self.source, pack.entry, taken), taken.outcome


def measure_tree(
    repo: pygit2.Repository, tree: pygit2.Oid, where: Path, limits: PackLimits
) -> None:
    """Refuse a pack tree past the caps before it is checked out: sizes come from object
    headers (no blob is read). Every file the checkout would write counts, ignored names too;
    `where` names the files in the refusal (rebased to the repository's paths by the caller)."""
    check_sizes(where, _blobs(repo, tree, where), limits)


def _blobs(repo: pygit2.Repository, tree: pygit2.Oid, where: Path) -> Iterator[tuple[Path, int]]:
    """Each file a checkout of `tree` would write, with its size from the object header."""
    pending: list[tuple[Path, pygit2.Oid]] = [(where, tree)]
    while pending:
        folder, oid = pending.pop()
        found = repo.get(oid)
        if not isinstance(found, pygit2.Tree):
            continue
        for entry in found:
            if entry.type_str == "tree":
                pending.append((folder / str(entry.name), entry.id))
            elif entry.type_str == "blob":  # not a submodule: git checks nothing out for those
                yield folder / str(entry.name), repo.odb.read_header(entry.id)[1]


def _still_there(result: Result) -> bool:
    """A snapshot may have been garbage-collected since: then export again."""
    return not isinstance(result, Candidate) or result.snapshot.is_dir()
