"""Building the registry's parts from the configuration: its database, and the test
executor and Python environments (with what sandboxed tests must not see).

`attuned test` and `attuned envs` need the tester without a database; `Registry.from_config`
puts the rest together.
"""

from __future__ import annotations

from pathlib import Path

from attuned.config import AttunedConfig
from attuned.envs.python import PythonEnvironments
from attuned.envs.tester import PackTester
from attuned.store.database import Database
from attuned.testing.executor import TestExecutor


def open_database(config: AttunedConfig) -> Database:
    """The configured database, migrated first when `database.auto_migrate` allows (else
    checked to be at the current schema)."""
    database = Database.from_config(config)
    if config.database.auto_migrate:
        database.migrate(packs_dir=config.packs_path)
    else:
        database.check()
    return database


def tester_for(config: AttunedConfig) -> PackTester:
    """The executor and the environments of this configuration (no database needed)."""
    hidden = private_paths(config)
    return PackTester(
        TestExecutor(config.testing, hidden_paths=hidden),
        PythonEnvironments(
            config.environments_path, config.environments, config.testing, hidden_paths=hidden
        ),
    )


def private_paths(config: AttunedConfig) -> tuple[Path, ...]:
    """What sandboxed pack tests must not see: attuned's state, database and config, and
    the environments of other packs (a test's own is shown read-only)."""
    paths = [config.state_dir.absolute()]
    envs = config.environments_path.absolute()
    if not envs.is_relative_to(paths[0]):
        paths.append(envs)
    if config.database_url.startswith("sqlite:///"):
        paths.append(Path(config.database_url.removeprefix("sqlite:///")).parent)
    if config.path is not None:
        paths.append(config.path.absolute())
    return tuple(dict.fromkeys(paths))
