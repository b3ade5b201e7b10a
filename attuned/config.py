"""attuned.yaml: the one model of the daemon's configuration.

Relative paths are taken from the working directory (so `config/attuned.yaml` works from the
repository root); systemd deployments use absolute paths. Unknown keys are errors: a typo in
an operator's config must not be silently ignored.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from attuned.errors import ConfigError, Problem, ValidationFailed
from attuned.pack.limits import MiB, PackLimits
from attuned.pack.manifest import check_ref
from attuned.settings.envs import EnvironmentSettings
from attuned.settings.git import GitSourceConfig
from attuned.settings.notify import OutboxConfig, SinkConfig
from attuned.settings.testing import ExecutorSettings
from attuned.yamlfile import load_model, read_yaml

ENV_CONFIG = "ATTUNED_CONFIG"
ENV_PREFIX = "ATTUNED_"  # ATTUNED_DATABASE__URL=... overrides database.url
DEFAULT_LOCATIONS = (Path("attuned.yaml"), Path("/etc/attuned/attuned.yaml"))
DEFAULT_WATCHED_FOLDER = Path("./packs.d")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Section):
    url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite at <state_dir>/attuned.db"
    )
    auto_migrate: bool = Field(default=True, description="upgrade the schema when opened")
    busy_timeout: float = Field(
        default=30, gt=0, description="SQLite: seconds to wait for another writer's lock"
    )
    create_attune_tables: bool = Field(
        default=False,
        description="PostgreSQL without Attune's schema: create Attune-shaped tables instead "
        "of refusing to start (demos, tests); SQLite always has them created",
    )


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON otherwise"
    )
    file: Path | None = Field(
        default=None, description="also append JSON lines here; reopened after logrotate moves it"
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
    stop_timeout: float = Field(
        default=8,
        gt=0,
        description="seconds a stop may wait (a locked or unreachable database) before the "
        "daemon exits anyway, as a crash would: within systemd's TimeoutStopSec",
    )


class DirectorySourceConfig(_Section):
    name: str
    type: Literal["directory"] = "directory"
    path: Path
    prune: bool | None = Field(default=None, description="default: reconcile.prune")
    skip_tests: bool = False
    force: bool = Field(default=False, description="register even when tests fail")
    regressions: Literal["block", "warn", "ignore"] | None = Field(
        default=None, description="default: the pack's testing.regressions, else testing's"
    )
    create: bool = Field(
        default=False,
        description="create the folder at start; off by default, because a missing folder "
        "usually means a missing mount",
    )

    @model_validator(mode="after")
    def _name(self) -> DirectorySourceConfig:
        check_ref(self.name.replace(".", "-"))
        return self


class ClusterConfig(_Section):
    """Several hosts, one PostgreSQL: one leader registers, followers serve the same packs.
    Only used with a PostgreSQL database; SQLite serves one host."""

    node: str = Field(
        default_factory=socket.gethostname, description="this host's name in status and logs"
    )
    poll_interval: float = Field(
        default=1.0, gt=0, description="seconds between a follower's attempts to take the lead"
    )
    keepalives_idle: int = Field(default=5, ge=1, description="TCP keepalive idle, seconds")
    keepalives_interval: int = Field(default=2, ge=1, description="between keepalive probes")
    keepalives_count: int = Field(default=3, ge=1, description="lost probes before giving up")
    connect_timeout: int = Field(default=5, ge=1, description="longest (re)connect, seconds")
    check_timeout: float = Field(
        default=2.0, gt=0, description="longest wait for the pre-commit leadership check"
    )
    archive_max_mb: int = Field(
        default=64, ge=1, description="largest pack (uncompressed) stored for followers"
    )
    follower_resync: float = Field(
        default=30, gt=0, description="seconds between a follower's full syncs, besides NOTIFY"
    )


class PackLimitsConfig(_Section):
    """Caps on one pack from any source (folder, archive, git): what is past them is refused
    before it is copied, and the served version stays."""

    max_pack_mb: int = Field(default=256, ge=1, description="MiB of all a pack's files")
    max_files: int = Field(default=10_000, ge=1, description="files in one pack")
    max_file_mb: int = Field(default=64, ge=1, description="MiB of any one file of a pack")
    max_archive_ratio: float = Field(
        default=100, gt=1, description="archives: unpacked bytes per archive byte, above 8 MiB"
    )

    def limits(self) -> PackLimits:
        return PackLimits(
            max_bytes=self.max_pack_mb * MiB,
            max_files=self.max_files,
            max_file_bytes=self.max_file_mb * MiB,
            max_ratio=self.max_archive_ratio,
        )


def _source_type(value: Any) -> str:
    """The `type` of a source entry; `directory` when left out."""
    if isinstance(value, dict):
        return str(value.get("type", "directory"))
    return str(getattr(value, "type", "directory"))


SourceConfig = Annotated[
    Annotated[DirectorySourceConfig, Tag("directory")] | Annotated[GitSourceConfig, Tag("git")],
    Discriminator(_source_type),
]


def _systemd_dir(variable: str, fallback: Path) -> Path:
    """systemd's StateDirectory= etc. (first entry) when running as a unit, else `fallback`."""
    value = os.environ.get(variable, "").split(":")[0]
    return Path(value) if value else fallback


class AttunedConfig(_Section):
    state_dir: Path = Field(default_factory=lambda: _systemd_dir("STATE_DIRECTORY", Path("./var")))
    packs_dir: Path | None = None
    status_file: Path | None = None
    metrics_file: Path | None = Field(
        default=None, description="Prometheus textfile (node_exporter textfile collector)"
    )
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    reconcile: ReconcileConfig = Field(default_factory=ReconcileConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    testing: ExecutorSettings = Field(default_factory=ExecutorSettings)
    environments: EnvironmentSettings = Field(default_factory=EnvironmentSettings)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    notify: list[SinkConfig] = Field(
        default_factory=list, description="where events go: webhook, exec and attune sinks"
    )
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    pack_limits: PackLimitsConfig = Field(default_factory=PackLimitsConfig)
    _path: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _unique_names(self) -> AttunedConfig:
        for what, names in (
            ("source", [s.name for s in self.sources]),
            ("notify sink", [s.name for s in self.notify]),
        ):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{what} names must be unique: {', '.join(duplicates)}")
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
        if self.status_file is not None:
            return self.status_file
        return _systemd_dir("RUNTIME_DIRECTORY", self.state_dir) / "status.json"

    @property
    def snapshots_path(self) -> Path:
        return self.state_dir / "snapshots"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.state_dir / 'attuned.db').absolute()}"

    @property
    def environments_path(self) -> Path:
        """Where pack environments (Python venvs) are kept."""
        if self.environments.path is not None:
            return self.environments.path
        return self.state_dir / "envs"

    @property
    def git_cache_path(self) -> Path:
        return self.state_dir / "git"

    @property
    def triggers_path(self) -> Path:
        """Where `attuned trigger SOURCE` drops a file the daemon watches."""
        return self.state_dir / "triggers"

    def prunes(self, source: DirectorySourceConfig | GitSourceConfig) -> bool:
        return self.reconcile.prune if source.prune is None else source.prune


# no file anywhere: state under ./var and one watched folder, ./packs.d
_DEFAULTS: dict[str, Any] = {
    "sources": [
        {
            "name": "packs.d",
            "type": "directory",
            "path": str(DEFAULT_WATCHED_FOLDER),
            "create": True,
        }
    ]
}


def default_config() -> AttunedConfig:
    """No file anywhere: state under ./var and one watched folder, ./packs.d."""
    return AttunedConfig.model_validate(_DEFAULTS)


def find_config(explicit: Path | None) -> Path | None:
    """`--config`, then $ATTUNED_CONFIG, then ./attuned.yaml, then
    $CONFIGURATION_DIRECTORY/attuned.yaml (under systemd), then /etc/attuned/attuned.yaml."""
    if explicit is not None:
        return explicit
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    locations = list(DEFAULT_LOCATIONS)
    if os.environ.get("CONFIGURATION_DIRECTORY"):
        locations.insert(1, _systemd_dir("CONFIGURATION_DIRECTORY", Path()) / "attuned.yaml")
    return next((p for p in locations if p.is_file()), None)


class _FromEnvironment(AttunedConfig, BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore"
    )


def environment_overrides() -> dict[str, Any]:
    """`ATTUNED_<KEY>[__<SUBKEY>]` variables, parsed by pydantic-settings (JSON for lists)."""
    source = EnvSettingsSource(_FromEnvironment, env_prefix=ENV_PREFIX, env_nested_delimiter="__")
    return dict(source())


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(explicit: Path | None = None) -> AttunedConfig:
    """The configuration to run with: the file (or built-in defaults) plus environment
    overrides, which win, so a deployment can set a secret URL without editing the file."""
    path = find_config(explicit)
    overrides = environment_overrides()
    if path is None:
        try:
            return AttunedConfig.model_validate(_merge(_DEFAULTS, overrides))
        except PydanticValidationError as exc:
            raise ConfigError(
                [
                    Problem(
                        None,
                        f"environment {ENV_PREFIX}*: {e['msg']}",
                        field=".".join(str(p) for p in e["loc"]),
                    )
                    for e in exc.errors(include_url=False)
                ]
            ) from None
    if not path.is_file():
        raise ConfigError([Problem(path, "config file not found")])
    data = read_yaml(path)
    if data is None:  # an empty file means all defaults
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([Problem(path, "expected a mapping at the top", 1)])
    try:
        config = load_model(path, AttunedConfig, _merge(data, overrides))
    except ValidationFailed as exc:
        raise ConfigError(exc.problems) from None
    config._path = path
    return config
