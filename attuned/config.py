"""attuned.yaml: the one model of the daemon's configuration.

Relative paths are taken from the working directory (so `config/attuned.yaml` works from the
repository root); systemd deployments use absolute paths. Unknown keys are errors: a typo in
an operator's config must not be silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from attuned.errors import ConfigError, Problem, ValidationFailed
from attuned.testing.settings import ExecutorSettings
from attuned.yamlfile import load_model, read_yaml

ENV_CONFIG = "ATTUNED_CONFIG"
DEFAULT_LOCATIONS = (Path("attuned.yaml"), Path("/etc/attuned/attuned.yaml"))


class DatabaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite at <state_dir>/attuned.db"
    )
    auto_migrate: bool = Field(default=True, description="upgrade the schema when opened")


class AttunedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state_dir: Path = Path("./var")
    packs_dir: Path | None = None
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    testing: ExecutorSettings = Field(default_factory=ExecutorSettings)
    source_path: Path | None = Field(default=None, exclude=True)

    @property
    def packs_path(self) -> Path:
        return self.packs_dir if self.packs_dir is not None else self.state_dir / "packs"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.state_dir / 'attuned.db').absolute()}"


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
        return AttunedConfig()
    if not path.is_file():
        raise ConfigError([Problem(path, "config file not found")])
    data = read_yaml(path)
    if data is None:  # an empty file means all defaults
        data = {}
    try:
        config = load_model(path, AttunedConfig, data)
    except ValidationFailed as exc:
        raise ConfigError(exc.problems) from None
    return config.model_copy(update={"source_path": path})
