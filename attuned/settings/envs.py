"""Operator-side settings of pack environments (`environments:` in attuned.yaml)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s/@]*@", re.IGNORECASE)


def redact_url(text: str) -> str:
    """`https://user:token@host/simple` -> `https://***@host/simple`, anywhere in a text.

    All of the user part goes: for package indexes the "user" is often the token itself."""
    return _USERINFO.sub(r"\1***@", text)


class EnvironmentSettings(BaseModel):
    """Where pack dependencies come from, how long building an environment may take, and
    how long an unused one is kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path | None = Field(
        default=None, description="where environments are kept (default <state_dir>/envs)"
    )
    index_url: str | None = Field(default=None, description="pip --index-url (default PyPI)")
    extra_index_urls: tuple[str, ...] = Field(default=(), description="pip --extra-index-url")
    find_links: tuple[str, ...] = Field(
        default=(), description="pip --find-links: directories of wheels, or URLs"
    )
    no_index: bool = Field(default=False, description="pip --no-index: find_links only")
    create_timeout: float = Field(
        default=600, gt=0, description="seconds to create one environment (venv + pip)"
    )
    inherit_runner_packages: bool = Field(
        default=True,
        description="packages of testing.python (pytest) stay importable, at lowest priority",
    )
    unused_grace: float = Field(
        default=3600, ge=0, description="seconds an environment no pack uses is kept"
    )
    runtimes: dict[str, str] = Field(
        default_factory=dict,
        description="runtime_deps name -> command that provides it ('' = always there)",
    )

    @field_validator("index_url", "extra_index_urls", "find_links")
    @classmethod
    def _no_whitespace(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        for item in (value,) if isinstance(value, str) else value or ():
            if not item.strip() or any(c.isspace() for c in item):
                raise ValueError(f"{redact_url(item)!r}: must be non-empty, without whitespace")
        return value

    @field_validator("runtimes")
    @classmethod
    def _lower_names(cls, value: dict[str, str]) -> dict[str, str]:
        return {name.strip().lower(): command.strip() for name, command in value.items()}

    def local_sources(self) -> list[Path]:
        """Directories on this host pip reads packages from (find_links paths, file://
        indexes): a sandboxed pip must see them."""
        paths = []
        urls = [self.index_url or "", *self.extra_index_urls]
        for link in [*self.find_links, *urls]:
            if link and "://" not in link:
                paths.append(Path(link).absolute())
            elif link.lower().startswith("file://"):
                paths.append(Path(link[len("file://") :]))
        return paths

    def pip_sources(self) -> dict[str, str]:
        """Where pip looks, as pip's environment variables: URLs with credentials stay off
        command lines (`ps` shows those to every user). Local find_links are absolute."""
        links = [
            str(Path(link).absolute()) if "://" not in link else link for link in self.find_links
        ]
        env: dict[str, str] = {}
        if self.index_url:
            env["PIP_INDEX_URL"] = self.index_url
        if self.extra_index_urls:
            env["PIP_EXTRA_INDEX_URL"] = " ".join(self.extra_index_urls)
        if links:
            env["PIP_FIND_LINKS"] = " ".join(links)
        if self.no_index:
            env["PIP_NO_INDEX"] = "1"
        return env
