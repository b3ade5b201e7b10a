"""The bare repository one git source fetches into: only a cache, so it may be rebuilt.

Nothing is ever checked out in it. `refs/attuned/current` keeps the commit last served, and
garbage collection keeps that commit's objects only: one pack, made shallow at that commit,
every other ref and object deleted (pygit2 has no `git gc`; its pack builder does the work).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pygit2

CURRENT = "refs/attuned/current"
_URL_KEY = "attuned.url"


@dataclass(frozen=True)
class Collected:
    refs_deleted: int
    objects_before: int
    objects_after: int


class Cache:
    """`<cache_dir>/<source>.git`; started afresh when the source's URL changed or it broke."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url
        self._repo: pygit2.Repository | None = None

    def open(self) -> pygit2.Repository:
        if self._repo is None:
            self._repo = self._open_or_init()
        return self._repo

    def discard(self) -> None:
        """Delete the cache (damaged, or of another URL); the next poll fetches again."""
        self._repo = None
        shutil.rmtree(self.path, ignore_errors=True)

    def commit(self, sha: str) -> pygit2.Oid | None:
        """A commit the cache holds, by full or short sha; None when absent.

        Raises pygit2.AmbiguousError for a short sha that more than one object starts with.
        """
        found = self.open().get(sha)
        return found.id if isinstance(found, pygit2.Commit) else None

    def mark_current(self, commit: pygit2.Oid) -> None:
        """Keep `commit` through garbage collection, whatever refs the server moves."""
        self.open().references.create(CURRENT, commit, force=True)

    def collect_garbage(self) -> Collected | None:
        """Keep the current commit's objects and nothing else; None when there is no current."""
        repo = self.open()
        ref = repo.references.get(CURRENT)
        if ref is None:
            return None
        current = ref.peel(pygit2.Commit).id
        deleted = 0
        for name in list(repo.references):
            if name != CURRENT:
                repo.references.delete(name)
                deleted += 1
        before = sum(1 for _ in repo.odb)
        objects = Path(repo.path) / "objects"
        packs = sorted((objects / "pack").glob("pack-*.pack"))
        loose = [d for d in objects.iterdir() if len(d.name) == 2 and any(d.iterdir())]
        if len(packs) <= 1 and not loose and repo.is_shallow:
            return Collected(deleted, before, before)
        self._repack(repo, current, objects)
        self._repo = None  # the open handle still maps the deleted packs
        return Collected(deleted, before, sum(1 for _ in self.open().odb))

    def _repack(self, repo: pygit2.Repository, current: pygit2.Oid, objects: Path) -> None:
        builder = pygit2.PackBuilder(repo)
        builder.add_recur(current)  # the commit, its tree, every blob: no history
        staging = Path(tempfile.mkdtemp(prefix="repack-", dir=objects))
        try:
            builder.write(str(staging))
            made = {p.name for p in staging.iterdir()}
            for path in staging.iterdir():
                os.replace(path, objects / "pack" / path.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for path in (objects / "pack").iterdir():
            if path.name not in made:
                path.unlink()
        for directory in objects.iterdir():
            if len(directory.name) == 2 and directory.is_dir():
                shutil.rmtree(directory, ignore_errors=True)
        # the parents are gone: say so, or walks (a fetch's negotiation) would miss them
        (Path(repo.path) / "shallow").write_text(f"{current}\n")

    def _open_or_init(self) -> pygit2.Repository:
        if self.path.exists():
            try:
                repo = pygit2.Repository(str(self.path))
                if repo.is_bare and recorded_url(repo) == self.url:
                    return repo
            except pygit2.GitError:
                pass
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repo = pygit2.init_repository(str(self.path), bare=True)
        repo.config[_URL_KEY] = self.url
        return repo


def recorded_url(repo: pygit2.Repository) -> str | None:
    try:
        return str(repo.config[_URL_KEY])
    except KeyError:
        return None
