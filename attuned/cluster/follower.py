"""A follower serves the packs the leader registered, using nothing but the database.

It never writes to the database. Each sync compares the pack rows with the local store and
fetches, verifies and swaps in what differs, so a follower that was offline for any number of
upgrades catches up in one pass. NOTIFY only says "look now": a lost notification costs
latency (until the next periodic sync), never correctness.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from attuned.cluster.archives import NOTIFY_CHANNEL, load_archive, unpack_verified
from attuned.errors import AttunedError, StoreError
from attuned.pack.content import list_files
from attuned.pack.limits import PackLimits
from attuned.store import registered_packs
from attuned.store.database import Database
from attuned.store.packstore import PackStore, version_dirname

_UNPACK_PREFIX = "unpack-"
# a silently dropped network must not leave LISTEN waiting forever (libpq TCP keepalives)
_LISTEN_OPTIONS: dict[str, Any] = {
    "autocommit": True,
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "application_name": "attuned-follower",
}


@dataclass
class SyncResult:
    """What one sync did, by ref; `missing` and `errors` are retried by the next sync."""

    activated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # registered, but no archive yet
    errors: list[str] = field(default_factory=list)  # "<ref>: <why>"

    @property
    def complete(self) -> bool:
        return not (self.missing or self.errors)


class _ArchiveMissing(Exception):
    pass


class Follower:
    """Keeps `store` equal to the pack rows; one thread calls `sync_once` and `wait_for_change`."""

    def __init__(
        self,
        database: Database,
        store: PackStore,
        *,
        work_dir: Path,
        keep_versions: int = 3,
        limits: PackLimits | None = None,
    ) -> None:
        self.db = database
        self.store = store
        self.work_dir = work_dir
        self.keep_versions = keep_versions
        self.limits = limits
        self._listener: psycopg.Connection[Any] | None = None
        self._missed = False  # a listening connection died: notifications may be lost
        work_dir.mkdir(parents=True, exist_ok=True)
        for leftover in work_dir.glob(f"{_UNPACK_PREFIX}*"):  # from a crash mid-unpack
            shutil.rmtree(leftover, ignore_errors=True)

    # -- sync -------------------------------------------------------------------------------

    def sync_once(self) -> SyncResult:
        """Make the store agree with the pack rows; raises only if the rows cannot be read."""
        self._listen_before_reading()
        with self.db.read() as session:
            wanted = {p.ref: (p.version, p.digest) for p in registered_packs.managed_heads(session)}
        result = SyncResult()
        for ref, (version, pack_digest) in sorted(wanted.items()):
            try:
                if self._serve(ref, version, pack_digest):
                    result.activated.append(ref)
            except _ArchiveMissing:
                result.missing.append(ref)
            except (AttunedError, OSError, SQLAlchemyError) as exc:  # StoreError included
                result.errors.append(f"{ref}: {_first_line(exc)}")
        for ref in sorted(self._served_refs() - wanted.keys()):
            try:
                self.store.remove(ref)
                result.removed.append(ref)
            except (StoreError, OSError) as exc:
                result.errors.append(f"{ref}: {_first_line(exc)}")
        return result

    def _serve(self, ref: str, version: str, pack_digest: str) -> bool:
        """Point `ref` at its registered version, fetching it if needed; False if it already is."""
        name = version_dirname(ref, version, pack_digest)
        current = self.store.active_dir(ref)
        if current is not None and current.name == name and current.is_dir():
            return False
        version_dir = self.store.versions / name
        if not version_dir.is_dir():  # a version kept from before (a rollback) needs no fetch
            version_dir = self._fetch(ref, version, pack_digest)
        self.store.activate(ref, version_dir)
        if current is not None:
            self.store.retire(ref, keep=self.keep_versions)
        return True

    def _fetch(self, ref: str, version: str, pack_digest: str) -> Path:
        with self.db.read() as session:
            data = load_archive(session, pack_digest)
        if data is None:
            raise _ArchiveMissing(ref)
        unpacked = self.work_dir / f"{_UNPACK_PREFIX}{ref}-{uuid.uuid4().hex}"
        try:
            unpack_verified(data, unpacked, pack_digest, limits=self.limits)
            version_dir = self.store.prepare(ref, version, unpacked, list_files(unpacked))
        finally:
            shutil.rmtree(unpacked, ignore_errors=True)
        if version_dir.name != version_dirname(ref, version, pack_digest):  # changed on disk
            self.store.discard(version_dir)
            raise StoreError(f"{version_dir} does not hold digest {pack_digest}")
        return version_dir

    def _served_refs(self) -> set[str]:
        root = self.store.root
        if not root.is_dir():
            return set()
        return {e.name for e in root.iterdir() if e.is_symlink() and not e.name.startswith(".")}

    # -- notifications ----------------------------------------------------------------------

    def wait_for_change(self, timeout: float) -> bool:
        """Block until the leader announces a change (True) or `timeout` seconds pass (False).

        True also when a lost connection may have swallowed notifications: sync to be sure.
        """
        if self.db.is_sqlite:  # no NOTIFY: the caller's periodic sync is the only signal
            time.sleep(timeout)
            return False
        deadline = time.monotonic() + timeout
        try:
            listener = self._listen()
        except psycopg.Error:  # the database is away; the next sync reports it
            time.sleep(timeout)
            return False
        if self._missed:
            self._missed = False
            return True
        try:
            heard = bool(list(listener.notifies(timeout=timeout, stop_after=1)))
            if heard:
                _drain(listener)
            return heard
        except psycopg.Error:  # reconnect now: True at once if that works, else wait it out
            self._drop_listener()
            return self.wait_for_change(max(0.0, deadline - time.monotonic()))

    def _listen(self) -> psycopg.Connection[Any]:
        if self._listener is None or self._listener.closed:
            conninfo = make_url(self.db.url).set(drivername="postgresql")
            listener = psycopg.connect(
                conninfo.render_as_string(hide_password=False), **_LISTEN_OPTIONS
            )
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
            self._listener = listener
        return self._listener

    def _listen_before_reading(self) -> None:
        """LISTEN before reading the rows, so a change committed after the read still wakes us."""
        if self.db.is_sqlite:
            return
        try:
            self._listen()
            self._missed = False  # the read that follows sees everything committed so far
        except psycopg.Error:
            self._drop_listener()

    def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        self._missed = True
        if listener is not None:
            listener.close()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()


def _first_line(exc: BaseException) -> str:
    return next(iter(str(exc).splitlines()), type(exc).__name__)


def _drain(listener: psycopg.Connection[Any], quiet: float = 0.05, cap: float = 0.5) -> None:
    """Swallow the rest of a burst, so that one sync answers it all: notifications of
    commits made together reach the listener over a few milliseconds, not at once (one
    announced just after a drain that took only what had arrived woke a second sync)."""
    until = time.monotonic() + cap
    while time.monotonic() < until and list(listener.notifies(timeout=quiet)):
        pass
