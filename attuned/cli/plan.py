"""attuned plan: what the next reconcile pass would do, per pack, changing nothing.

Reads the sources in place (no snapshot), the database in read transactions (no migration,
no repair of the pack store) and runs the daemon's own planner; see docs/plan.md.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from attuned.cli.common import add_common, colour, config_of, print_json
from attuned.cli.verbs import help_of
from attuned.config import AttunedConfig, DirectorySourceConfig
from attuned.errors import AttunedError, Problem, StoreError, ValidationFailed, headline
from attuned.reconcile import facts, inplace, preview
from attuned.reconcile.inplace import Scanned
from attuned.reconcile.model import Memory
from attuned.reconcile.planner import plan as make_plan
from attuned.reconcile.preview import PackPreview, Preview, Served
from attuned.settings.git import GitSourceConfig
from attuned.store import registered_packs, suspensions
from attuned.store.attune.reader import ComponentRow
from attuned.store.database import Database
from attuned.store.packstore import PackStore
from attuned.store.registered_packs import RegisteredPack

_LABEL = {"noop": "no change"}
_MARK = {"added": "+", "changed": "~", "removed": "-"}
_COLOUR = {
    "install": "green",
    "upgrade": "yellow",
    "reinstall": "yellow",
    "remove": "red",
    "blocked": "red",
    "invalid": "red",
    "conflict": "red",
    "failed": "red",
    "wait": "yellow",
    "suspended": "yellow",
    "keep": "dim",
    "noop": "dim",
}


class NotReady(AttunedError):
    """The database is not at this attuned's schema: `plan` never migrates, so it stops."""

    exit_code = 2


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("plan", help=help_of("plan"))
    parser.add_argument("--source", metavar="NAME", help="only the packs of this source")
    parser.add_argument(
        "--revision",
        metavar="REV",
        help="with --source naming a git source: plan this commit, branch or tag of it",
    )
    parser.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 0 when nothing would change, 1 when something would, 2 on an error",
    )
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        found = make_preview(args)
    except (AttunedError, OSError) as exc:
        error = exc if isinstance(exc, AttunedError) else AttunedError(headline(exc))
        if args.exit_code:
            error.exit_code = 2  # like `flux diff`: 2 is "could not tell"
        raise error from None
    if args.json:
        print_json(found.as_dict())
    else:
        print(render(found))
    if args.exit_code:
        return 1 if found.changes else 0
    return 0


def make_preview(args: argparse.Namespace) -> Preview:
    config = config_of(args)
    _check_arguments(config, args.source, args.revision)
    db = open_database(config)
    try:
        with _reading(db) as session:
            suspended = set(suspensions.suspended_refs(session))
            actual = facts.actual_packs(session, suspended)
            failures = facts.remembered_failures(session)
            registered = {p.ref: p for p in registered_packs.list_packs(session)}
        scans = [_scan(config, s, args.source, args.revision) for s in config.sources]
        origins = {p.origin: p.ref for p in registered.values() if p.source is not None}
        desired = inplace.with_origin_hints(inplace.desired_of(scans), origins)
        memory = Memory(failures=failures, suspended=frozenset(suspended))
        planned = make_plan(desired, actual, memory, time.time())
        store = PackStore(config.packs_path)
        policies = {
            s.name: preview.Policy(skip_tests=s.skip_tests, force=s.force) for s in config.sources
        }
        found = preview.build(
            planned, scans, actual, policies, _served_from(store, db, registered), desired
        )
    finally:
        db.dispose()
    return found.only_source(args.source) if args.source else found


def _check_arguments(config: AttunedConfig, source: str | None, revision: str | None) -> None:
    names = {s.name: s for s in config.sources}
    if source is not None and source not in names:
        known = ", ".join(sorted(names)) or "none"
        raise ValidationFailed(
            [Problem(None, f"no source named {source!r} (configured: {known})", field="--source")]
        )
    if revision is None:
        return
    if source is None:
        raise ValidationFailed(
            [Problem(None, "needs --source NAME naming a git source", field="--revision")]
        )
    if not isinstance(names[source], GitSourceConfig):
        raise ValidationFailed(
            [Problem(None, f"source {source!r} is a folder, not a git source", field="--revision")]
        )


def open_database(config: AttunedConfig) -> Database:
    """The database, checked (never migrated): exit 2 when it is not at this version's
    schema. A SQLite file that is not there is not created."""
    url = make_url(config.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(str(url.database))
        if not path.is_file():
            raise NotReady(
                f"no database at {path} yet: the daemon, `attuned reconcile --once` or "
                "`attuned db upgrade` creates it"
            )
    db = Database.from_config(config)
    event.listen(db.engine, "connect", _read_only_session)
    try:
        db.check()
    except AttunedError as exc:
        db.dispose()
        raise NotReady(f"{exc} (attuned plan never changes the database)") from None
    except SQLAlchemyError as exc:
        db.dispose()
        raise AttunedError(f"cannot read the database {db.where}: {headline(exc)}") from None
    return db


def _read_only_session(dbapi_connection: Any, _record: Any) -> None:
    """Every connection refuses writes: what `plan` promises, the database enforces."""
    cursor = dbapi_connection.cursor()
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor.execute("PRAGMA query_only=ON")
    else:  # a session setting, kept only if its own transaction commits
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        dbapi_connection.commit()
    cursor.close()


@contextmanager
def _reading(db: Database) -> Iterator[Session]:
    """A read transaction; a database error becomes one line saying which database."""
    try:
        with db.read() as session:
            yield session
    except SQLAlchemyError as exc:
        raise AttunedError(f"cannot read the database {db.where}: {headline(exc)}") from None


def _scan(
    config: AttunedConfig,
    source: DirectorySourceConfig | GitSourceConfig,
    only: str | None,
    revision: str | None,
) -> Scanned:
    prune = config.prunes(source)
    if isinstance(source, DirectorySourceConfig):
        return inplace.scan_directory(source.name, source.path, prune=prune)
    cache = inplace.git_cache_path(config.git_cache_path, source)
    if revision is None or source.name != only:
        return inplace.scan_git_cached(source, cache, prune=prune)
    import pygit2

    commit = inplace.fetch_revision(source, cache, revision)
    return inplace.scan_git_commit(source, pygit2.Repository(str(cache)), commit, prune=prune)


def _served_from(
    store: PackStore, db: Database, registered: dict[str, RegisteredPack]
) -> Callable[[str], Served | None]:
    """The components a pack serves now: its pack store directory, else Attune's rows."""

    def served(ref: str) -> Served | None:
        record = registered.get(ref)
        if record is None:
            return None
        try:
            active = store.active_dir(ref) if record.managed else None
        except StoreError:
            active = None

        def rows() -> Sequence[ComponentRow]:
            with _reading(db) as session:
                return registered_packs.components_of(session, record.id)

        return preview.served_components(active, rows)

    return served


# -- text ------------------------------------------------------------------------------------


def render(found: Preview) -> str:
    lines = [_source_line(s) for s in found.sources if not s.readable or s.revision]
    if not found.packs:
        lines.append("no packs: no source offers one and attuned registered none")
    width = max((len(_name(p)) for p in found.packs), default=0)
    versions = max((len(_versions(p)) for p in found.packs), default=0)
    for pack in found.packs:
        label = _LABEL.get(pack.action, pack.action)
        head = f"{label:<9}  {_name(pack):<{width}}  {_versions(pack):<{versions}}"
        lines.append(f"{colour(head, _COLOUR.get(pack.action, 'bold'))}  {_detail(pack)}".rstrip())
        lines.extend(_component_lines(pack))
    counts = found.summary()
    lines.append(
        f"{counts['install']} to install, {counts['upgrade']} to upgrade, "
        f"{counts['reinstall']} to reinstall, {counts['remove']} to remove, "
        f"{counts['blocked']} blocked, {counts['unchanged']} unchanged"
    )
    return "\n".join(lines)


def _source_line(source: preview.SourceView) -> str:
    if not source.readable:
        return f"source {source.name}: unreadable ({source.error}); none of its packs is removed"
    return f"source {source.name}: commit {source.revision}"


def _name(pack: PackPreview) -> str:
    if pack.ref is None or pack.action in ("invalid", "conflict"):
        return f"{pack.ref or '?'} ({pack.source}:{pack.entry})"
    return pack.ref


def _versions(pack: PackPreview) -> str:
    if pack.action == "upgrade":
        return f"{pack.from_version} -> {pack.to_version}"
    return pack.to_version or pack.from_version or ""


def _detail(pack: PackPreview) -> str:
    if pack.tests is not None:
        return f"tests: {pack.tests}"
    if pack.action == "noop":
        return ""
    return pack.reason


def _component_lines(pack: PackPreview) -> list[str]:
    diff = pack.components
    if diff is None:
        return []
    lines = []
    for what, changes in (
        ("added", diff.added),
        ("changed", diff.changed),
        ("removed", diff.removed),
    ):
        for change in changes:
            fields = f"  ({', '.join(change.fields)})" if change.fields else ""
            lines.append(f"    {_MARK[what]} {change.kind:<14} {change.ref}{fields}")
    if not lines and pack.action in ("upgrade", "reinstall"):
        lines.append("    no component changes (other files differ)")
    if diff.compared == "refs" and pack.action != "install":
        lines.append("    (served version not in the pack store: compared by ref only)")
    return lines
