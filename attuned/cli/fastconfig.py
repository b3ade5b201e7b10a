"""The few settings `status` and `trigger` need, read without the configuration models.

`attuned.config.load_config` validates everything through pydantic-settings and the models,
which costs those verbs 280 ms of a budget of 100. They need four values: the file read, the
state directory, the status file and the sources' names. This module finds the file as
`find_config` does, reads it with the C YAML loader, applies the `ATTUNED_STATE_DIR` and
`ATTUNED_STATUS_FILE` overrides and derives those values with the models' defaults;
tests/cli/test_fastconfig.py holds both readers to the same answers.

Whatever it does not understand exactly (an unknown key, a value of another type, a key
written twice, an override of the sources) makes `read` return None, and the caller loads
the full configuration, which accepts it or says, with file, line and key, what is wrong.
Keys these verbs do not use are not checked: `attuned config check` does that.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, NamedTuple

import yaml

# as attuned.config has them (a test compares): importing it costs 280 ms
ENV_CONFIG = "ATTUNED_CONFIG"
DEFAULT_LOCATIONS = (Path("attuned.yaml"), Path("/etc/attuned/attuned.yaml"))
DEFAULT_SOURCE = "packs.d"  # the watched folder when no file exists, ./packs.d
MAX_BYTES = 1 << 20  # attuned.yamlfile.MAX_YAML_BYTES: a larger file is the full loader's
# the keys the models accept (a test compares): an unknown one is an error to explain
CONFIG_KEYS = frozenset(
    {
        "state_dir",
        "packs_dir",
        "status_file",
        "metrics_file",
        "database",
        "log",
        "reconcile",
        "sources",
        "testing",
        "environments",
        "cluster",
        "notify",
        "outbox",
        "pack_limits",
    }
)
_COMMON_SOURCE_KEYS = {"name", "type", "path", "prune", "skip_tests", "force", "regressions"}
SOURCE_KEYS = {
    "directory": frozenset({*_COMMON_SOURCE_KEYS, "create"}),
    "git": frozenset(
        {
            *_COMMON_SOURCE_KEYS,
            "url",
            "ref",
            "interval",
            "jitter",
            "timeout",
            "credentials",
            "verify",
        }
    ),
}
# what each type needs, and of which YAML type: the full loader explains a missing one
REQUIRED_SOURCE_KEYS: dict[str, dict[str, type]] = {
    "directory": {"name": str, "path": str},
    "git": {"name": str, "url": str, "ref": dict},
}
_REF = re.compile(r"^[a-z][a-z0-9_-]*$")  # attuned.pack.versions.REF_PATTERN
_OVERRIDDEN = ("state_dir", "status_file")  # the ATTUNED_* variables this reader applies
_MERGE_TAG = "tag:yaml.org,2002:merge"


class Settings(NamedTuple):
    """What `status` and `trigger` use of the configuration."""

    path: Path | None  # the file read; None: built-in defaults
    state_dir: Path
    status_path: Path
    sources: dict[str, str]  # name -> type ("directory", "git"), in the file's order

    @property
    def triggers_path(self) -> Path:
        return self.state_dir / "triggers"


class _Unsure(Exception):
    """Something only the full loader may judge."""


def read(explicit: Path | None) -> Settings | None:
    """The settings, or None when only the full loader can tell (see the module's doc)."""
    try:
        return _read(explicit)
    except (_Unsure, yaml.YAMLError, RecursionError, ValueError, OSError):
        return None


def find(explicit: Path | None) -> Path | None:
    """attuned.config.find_config: `--config`, $ATTUNED_CONFIG, ./attuned.yaml,
    $CONFIGURATION_DIRECTORY/attuned.yaml, /etc/attuned/attuned.yaml."""
    if explicit is not None:
        return explicit
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    locations = list(DEFAULT_LOCATIONS)
    if os.environ.get("CONFIGURATION_DIRECTORY"):
        locations.insert(1, _systemd_dir("CONFIGURATION_DIRECTORY", Path()) / "attuned.yaml")
    return next((p for p in locations if p.is_file()), None)


def _read(explicit: Path | None) -> Settings:
    path = find(explicit)
    data: dict[str, Any]
    if path is None:
        data = {"sources": [{"name": DEFAULT_SOURCE, "path": DEFAULT_SOURCE}]}
    else:
        loaded = yaml.load(_text(path), Loader=_Loader)  # noqa: S506 - a safe loader
        data = {} if loaded is None else loaded
        if not isinstance(data, dict) or not set(data) <= CONFIG_KEYS:
            raise _Unsure
    data.update(_overrides())
    state_dir = (
        _path(data["state_dir"])
        if "state_dir" in data
        else _systemd_dir("STATE_DIRECTORY", Path("./var"))
    )
    status_file = data.get("status_file")
    status_path = (
        _path(status_file)
        if status_file is not None
        else _systemd_dir("RUNTIME_DIRECTORY", state_dir) / "status.json"
    )
    return Settings(path, state_dir, status_path, _sources(data.get("sources", [])))


def _text(path: Path) -> str:
    """A small regular file's text, as attuned.yamlfile reads it (else: the full loader's)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            raise _Unsure
        return os.read(fd, MAX_BYTES + 1).decode("utf-8")
    finally:
        os.close(fd)


def _overrides() -> dict[str, str]:
    """ATTUNED_STATE_DIR and ATTUNED_STATUS_FILE (any case, as pydantic-settings reads
    them); an override of the sources, or a variable it would nest, is the full loader's."""
    found: dict[str, str] = {}
    for name, value in os.environ.items():
        key = name.lower().removeprefix("attuned_")
        if key == name.lower():
            continue
        head = key.split("__")[0]
        if head == "sources" or (head in _OVERRIDDEN and (key != head or head in found)):
            raise _Unsure
        if head in _OVERRIDDEN:
            found[head] = value
    return found


def _path(value: Any) -> Path:
    if not isinstance(value, str):
        raise _Unsure
    return Path(value)  # "" too: the models make it Path("."), as this does


def _sources(entries: Any) -> dict[str, str]:
    if not isinstance(entries, list):
        raise _Unsure
    sources: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise _Unsure
        kind = entry.get("type", "directory")
        if kind not in SOURCE_KEYS or not set(entry) <= SOURCE_KEYS[kind]:
            raise _Unsure
        needed = REQUIRED_SOURCE_KEYS[kind].items()
        if not all(isinstance(entry.get(key), of) for key, of in needed):
            raise _Unsure
        name = entry["name"]
        if not _REF.match(name.replace(".", "-")) or name in sources:
            raise _Unsure
        sources[name] = kind
    return sources


def _systemd_dir(variable: str, fallback: Path) -> Path:
    """attuned.config._systemd_dir: the first entry of systemd's StateDirectory= etc."""
    value = os.environ.get(variable, "").split(":")[0]
    return Path(value) if value else fallback


try:  # the C parser; attuned.yamlfile uses it too
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """The safe loader, unsure of a key written twice in one mapping (PyYAML would keep the
    last one silently; attuned.yamlfile refuses it)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            keys = [
                self.construct_object(k)
                for k, _ in node.value
                if k.tag != _MERGE_TAG and isinstance(k, yaml.ScalarNode)
            ]
            if len(keys) != len(set(keys)):
                raise _Unsure
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]
