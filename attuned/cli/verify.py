"""attuned verify SOURCE [--revision R]: the daemon's signature check, for a pack repo's CI.

The source's `verify:` settings are read from the configuration, its repository is fetched
into a scratch cache (never the daemon's), and the commit its ref names now (or R: a commit,
branch or tag) is checked exactly as the daemon checks it before activating.
Exit 0: verified; 1: not verified (the reason is printed) or the fetch failed; 2: usage or
configuration error (no such source, not a git source, no `verify:`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from attuned.cli.common import add_common, config_of, print_json
from attuned.cli.verbs import help_of
from attuned.errors import AttunedError, Problem, ValidationFailed

if TYPE_CHECKING:  # pygit2 and the config models: imported when the verb runs
    import pygit2

    from attuned.reconcile.sources.git_verify import Verdict
    from attuned.settings.git import GitSourceConfig


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("verify", help=help_of("verify"))
    parser.add_argument("source", help="a git source's name in attuned.yaml")
    parser.add_argument(
        "--revision", metavar="R", help="a commit, branch or tag instead of the source's ref"
    )
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from attuned.settings.git import GitSourceConfig as GitConfig

    config = config_of(args)  # ConfigError (exit 2) names file, line and key
    source = next((s for s in config.sources if s.name == args.source), None)
    where = config.path
    if source is None:
        names = ", ".join(s.name for s in config.sources) or "none"
        raise ValidationFailed([Problem(where, f"no source named {args.source!r} ({names})")])
    if not isinstance(source, GitConfig) or source.verify is None:
        raise ValidationFailed(
            [Problem(where, f"source {args.source!r} is not a git source with verify: set")]
        )
    with tempfile.TemporaryDirectory(prefix="attuned-verify-") as scratch:
        commit, verdict = _check(source, Path(scratch), args.revision)
    answer = {
        "source": source.name,
        "revision": commit,
        "verified": verdict.ok,
        "signer": verdict.signer,
        "reason": verdict.reason or None,
    }
    if args.json:
        print_json(answer)
    elif verdict.ok:
        print(f"verified: {source.name} commit {commit} signed by {verdict.signer}")
    else:
        print(f"not verified: {source.name} {verdict.reason}")
    return 0 if verdict.ok else 1


def _check(source: GitSourceConfig, scratch: Path, revision: str | None) -> tuple[str, Verdict]:
    """Fetch into `scratch` and check the commit (and tag) the daemon would activate."""
    from attuned.reconcile.sources.git_cache import Cache
    from attuned.reconcile.sources.git_remote import GitRemote, RemoteError
    from attuned.reconcile.sources.git_verify import Verifier

    assert source.verify is not None
    cache = Cache(scratch / "cache.git", source.url)
    repo = cache.open()
    remote = GitRemote(source, cache.path)
    try:
        if revision is None:
            polled = remote.poll()
            commit, tag, name = str(polled.commit), polled.tag, polled.refname
        else:
            remote.fetch_everything()
            commit, tag, name = _revision(repo, revision)
    except RemoteError as exc:
        raise AttunedError(f"{source.name}: {exc}") from None
    verifier = Verifier(source.verify)
    try:
        tag_name = name.removeprefix("refs/tags/")
        verdict = verifier.check(cache.path, commit, str(tag) if tag else None, tag_name)
    finally:
        verifier.close()
    return commit, verdict


def _revision(repo: pygit2.Repository, revision: str) -> tuple[str, pygit2.Oid | None, str]:
    """(commit, annotated tag object or None, ref name) that `revision` names."""
    import pygit2

    for refname in (f"refs/tags/{revision}", f"refs/heads/{revision}"):
        if refname in repo.references:
            target = repo.get(repo.references[refname].target)
            tag = target.id if isinstance(target, pygit2.Tag) else None
            commit = repo.references[refname].peel(pygit2.Commit).id
            return str(commit), tag, refname
    try:
        found = repo.revparse_single(revision).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        raise AttunedError(f"{revision!r} names no commit, branch or tag of the source") from None
    return str(found.id), None, ""
