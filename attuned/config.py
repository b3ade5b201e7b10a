"""attuned.yaml: the one model of the daemon's configuration.

Relative paths are taken from the working directory (so `config/attuned.yaml` works from the
repository root); systemd deployments use absolute paths. Unknown keys are errors: a typo in
an operator's config must not be silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from attuned.errors import ConfigError, Problem, ValidationFailed
from attuned.pack.manifest import check_ref
from attuned.testing.settings import ExecutorSettings
from attuned.yamlfile import load_model, read_yaml

ENV_CONFIG = "ATTUNED_CONFIG"
DEFAULT_LOCATIONS = (Path("attuned.yaml"), Path("/etc/attuned/attuned.yaml"))
DEFAULT_WATCHED_FOLDER = Path("./packs.d")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Section):
    url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite at <state_dir>/attuned.db"
    )
    auto_migrate: bool = Field(default=True, description="upgrade the schema when opened")


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON otherwise"
    )


class ReconcileConfig(_Section):
    quiet_period: float = Field(default=0.5, ge=0, description="seconds without events per pack")
    resync_interval: float = Field(default=300, gt=0, description="full rescan, seconds")
    resync_jitter: float = Field(default=10, ge=0, description="random delay, seconds")
    concurrency: int = Field(default=2, ge=1, description="packs tested at once")
    prune: bool = Field(default=True, description="remove packs no source provides any more")
    keep_versions: int = Field(default=3, ge=1, description="store versions kept per pack")
    retry_initial: float = Field(default=5, gt=0, description="first transient retry, seconds")
    retry_max: float = Field(default=300, gt=0, description="cap of the retry backoff, seconds")


class DirectorySourceConfig(_Section):
    name: str
    type: Literal["directory"] = "directory"
    path: Path
    prune: bool | None = Field(default=None, description="default: reconcile.prune")
    skip_tests: bool = False
    force: bool = Field(default=False, description="register even when tests fail")
    create: bool = Field(
        default=False,
        description="create the folder at start; off by default, because a missing folder "
        "usually means a missing mount",
    )

    @model_validator(mode="after")
    def _name(self) -> DirectorySourceConfig:
        check_ref(self.name.replace(".", "-"))
        return self


SourceConfig = Annotated[DirectorySourceConfig, Field(discriminator="type")]


class AttunedConfig(_Section):
    state_dir: Path = Path("./var")
    packs_dir: Path | None = None
    status_file: Path | None = None
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    reconcile: ReconcileConfig = Field(default_factory=ReconcileConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    testing: ExecutorSettings = Field(default_factory=ExecutorSettings)
    _path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _unique_source_names(self) -> AttunedConfig:
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique: {', '.join(duplicates)}")
        return self

    @property
    def path(self) -> Path | None:
        """The file this configuration was read from (None: built-in defaults)."""
        return self._path

    @property
    def packs_path(self) -> Path:
        return self.packs_dir if self.packs_dir is not None else self.state_dir / "packs"

    @property
    def status_path(self) -> Path:
        return self.status_file if self.status_file is not None else self.state_dir / "status.json"

    @property
    def snapshots_path(self) -> Path:
        return self.state_dir / "snapshots"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.state_dir / 'attuned.db').absolute()}"

    def prunes(self, source: DirectorySourceConfig) -> bool:
        return self.reconcile.prune if source.prune is None else source.prune


def default_config() -> AttunedConfig:
    """No file anywhere: state under ./var and one watched folder, ./packs.d."""
    return AttunedConfig(
        sources=[DirectorySourceConfig(name="packs.d", path=DEFAULT_WATCHED_FOLDER, create=True)]
    )


def find_config(explicit: Path | None) -> Path | None:
    """`--config`, then $ATTUNED_CONFIG, then ./attuned.yaml, then /etc/attuned/attuned.yaml."""
    if explicit is not None:
        return explicit
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    return next((p for p in DEFAULT_LOCATIONS if p.is_file()), None)


def load_config(explicit: Path | None = None) -> AttunedConfig:
    """The configuration to run with; built-in defaults when no file exists anywhere."""
    path = find_config(explicit)
    if path is None:
        return default_config()
    if not path.is_file():
        raise ConfigError([Problem(path, "config file not found")])
    data = read_yaml(path)
    if data is None:  # an empty file means all defaults
        data = {}
    try:
        config = load_model(path, AttunedConfig, data)
    except ValidationFailed as exc:
        raise ConfigError(exc.problems) from None
    config._path = path
    return config
