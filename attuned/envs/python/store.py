"""The environments under one root as packs see them: used under a shared lock (built first
when missing), listed for `attuned envs list`, and collected when no pack has used them for a
while. Packs with the same requirements share one environment."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attuned.envs.python.build import EnvironmentBuild
from attuned.envs.python.keys import EnvironmentKeys
from attuned.envs.python.layout import (
    BUILD_PREFIX,
    KEY_LENGTH,
    KEY_NAME,
    LAST_USED,
    LOCKS,
    last_used,
    read_marker,
    remove_env,
    size,
    touch,
)
from attuned.envs.python.locks import KeyLock
from attuned.pack.requirements import normalize
from attuned.report.log import Event, get_logger
from attuned.settings.envs import EnvironmentSettings
from attuned.settings.testing import ExecutorSettings
from attuned.testing.environment import PackEnvironment
from attuned.testing.staging import remove_tree

log = get_logger()


@dataclass(frozen=True)
class EnvironmentInfo:
    """One directory under the environments root, as `attuned envs list` shows it."""

    key: str
    path: Path
    complete: bool
    last_used: float
    size_bytes: int
    marker: dict[str, Any] = field(default_factory=dict)


class PythonEnvironments(EnvironmentKeys):
    """Prepares, shares, lists and removes pack environments under `root`."""

    def __init__(
        self,
        root: Path,
        settings: EnvironmentSettings | None = None,
        testing: ExecutorSettings | None = None,
        *,
        hidden_paths: Iterable[Path] = (),
    ) -> None:
        """`testing`: the executor's settings (interpreter, PATH, sandbox, output limit);
        `hidden_paths`: what a sandboxed pip must not see (the daemon's state, database and
        config), as for tests."""
        self.root = root.absolute()
        super().__init__(settings, testing)
        self.hidden_paths = (*self.testing.hidden_paths, *hidden_paths)

    def path_for(self, key: str) -> Path:
        return self.root / key[:KEY_LENGTH]

    def _lock(self, key: str) -> KeyLock:
        return KeyLock(self.root / LOCKS / f"{key[:KEY_LENGTH]}.lock")

    # -- use -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def use(
        self,
        requirements: Sequence[str],
        *,
        pack: str,
        cancel: threading.Event | None = None,
    ) -> Iterator[PackEnvironment]:
        """The environment for `requirements`, built first if needed, held (shared lock)
        until the block ends so the garbage collector leaves it alone.

        Raises EnvironmentFailed (with the build's log) when it cannot be built."""
        key = self.key_for(requirements)
        env_dir = self.path_for(key)
        lock = self._lock(key)
        lock.acquire(exclusive=False, cancel=cancel)
        try:
            if not self._complete(env_dir, key):
                lock.release()
                lock.acquire(exclusive=True, cancel=cancel)
                if not self._complete(env_dir, key):  # nobody built it while we waited
                    EnvironmentBuild(
                        self,
                        root=self.root,
                        hidden_paths=self.hidden_paths,
                        env_dir=env_dir,
                        key=key,
                        requirements=normalize(list(requirements)),
                        pack=pack,
                        cancel=cancel,
                    ).run()
                touch(env_dir / LAST_USED)
                lock.downgrade()
            else:
                touch(env_dir / LAST_USED)
            yield PackEnvironment(env_dir)
        finally:
            lock.release()

    @staticmethod
    def _complete(env_dir: Path, key: str) -> bool:
        marker = read_marker(env_dir)
        return marker.get("key") == key and (env_dir / "bin" / "python").exists()

    # -- upkeep ----------------------------------------------------------------------------

    def anything_to_collect(self, *, grace: float | None = None) -> bool:
        """Whether some environment has been unused for `grace`, or a build left debris:
        a few stats, so callers can skip working out which environments are in use."""
        grace = self.settings.unused_grace if grace is None else grace
        horizon = time.time() - grace
        for entry in self.root.iterdir() if self.root.is_dir() else ():
            if entry.name.startswith(BUILD_PREFIX):
                return True
            if entry.name == LOCKS and any(
                not (self.root / lock.name.removesuffix(".lock")).exists()
                for lock in entry.glob("*.lock")
            ):
                return True
            if KEY_NAME.match(entry.name) and last_used(entry) <= horizon:
                return True
        return False

    def collect_garbage(self, in_use: Iterable[str], *, grace: float | None = None) -> list[Path]:
        """Remove environments whose key is not `in_use` and that no pack used for `grace`
        seconds (default `unused_grace`); environments in use or being built are skipped.
        Also removes what crashed builds left behind."""
        grace = self.settings.unused_grace if grace is None else grace
        keep = {key[:KEY_LENGTH] for key in in_use}
        horizon = time.time() - grace
        removed: list[Path] = []
        entries = sorted(self.root.iterdir()) if self.root.is_dir() else []
        for entry in entries:
            name = entry.name
            if KEY_NAME.match(name):
                if name in keep or last_used(entry) > horizon:
                    continue
                key16 = name
            elif name.startswith(BUILD_PREFIX):
                key16 = name[len(BUILD_PREFIX) :][:KEY_LENGTH]
            else:
                continue
            lock = self._lock(key16)
            if not lock.acquire(exclusive=True, wait=False):
                continue  # in use, or being built
            try:
                if name.startswith(BUILD_PREFIX):
                    remove_tree(entry)
                    continue
                complete = bool(read_marker(entry))
                unused_s = round(time.time() - last_used(entry))
                remove_env(entry)
                removed.append(entry)
            finally:
                lock.release(remove=not name.startswith(BUILD_PREFIX))
            log.info(
                Event.ENV_REMOVED,
                env=name,
                path=str(entry),
                reason="unused" if complete else "incomplete",
                unused_s=unused_s,
            )
        self._remove_stale_locks()
        return removed

    def _remove_stale_locks(self) -> None:
        """Lock files of environments that do not exist (a failed build leaves one)."""
        locks = self.root / LOCKS
        for path in sorted(locks.glob("*.lock")) if locks.is_dir() else []:
            key16 = path.name.removesuffix(".lock")
            if (self.root / key16).exists() or any(self.root.glob(f"{BUILD_PREFIX}{key16}-*")):
                continue
            lock = KeyLock(path)
            if lock.acquire(exclusive=True, wait=False):
                lock.release(remove=not (self.root / key16).exists())

    def list(self) -> list[EnvironmentInfo]:
        found = []
        for entry in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if not KEY_NAME.match(entry.name) or not entry.is_dir():
                continue
            marker = read_marker(entry)
            found.append(
                EnvironmentInfo(
                    key=str(marker.get("key") or entry.name),
                    path=entry,
                    complete=bool(marker),
                    last_used=last_used(entry),
                    size_bytes=size(entry),
                    marker=marker,
                )
            )
        return found
