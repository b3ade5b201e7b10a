"""The pack manifest (pack.yaml) as pydantic models, following Attune's format.

Unknown top-level keys are kept in `extras` and reported as warnings so that packs written
for a newer Attune still load.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from attuned.errors import Problem, ValidationFailed
from attuned.pack.confschema import ConfSchema
from attuned.pack.versions import REF_PATTERN, Constraint, parse_version
from attuned.yamlfile import line_map, load_model, locate, read_yaml

MANIFEST_NAME = "pack.yaml"


class RunnerType(StrEnum):
    SCRIPT = "script"
    UNITTEST = "unittest"
    PYTEST = "pytest"
    TAP = "tap"


class ResultFormat(StrEnum):
    SIMPLE = "simple"
    JUNIT = "junit"
    TAP = "tap"
    JSON = "json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _inside_pack(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if Path(value).is_absolute() or ".." in Path(value).parts:
        raise ValueError(f"{value!r} must be a path inside the pack")
    return value


class RunnerSpec(_Strict):
    """One entry of `testing.runners`: how to start a test program and read its result."""

    type: RunnerType
    entry_point: str
    timeout: float = Field(default=300, gt=0)
    result_format: ResultFormat = ResultFormat.SIMPLE
    args: list[str] = Field(default_factory=list)

    @field_validator("entry_point")
    @classmethod
    def _relative(cls, value: str) -> str:
        return _inside_pack(value)


class Discovery(_Strict):
    method: str = "directory"
    path: str = "tests"


class TestingSection(_Strict):
    """`testing:` — which runners to run, in the order written, and what counts as success."""

    __test__ = False  # not a pytest class

    enabled: bool = True
    discovery: Discovery = Field(default_factory=Discovery)
    runners: dict[str, RunnerSpec] = Field(default_factory=dict)
    result_path: str | None = None
    min_pass_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    on_failure: Literal["block", "warn"] = "block"
    allow_empty: bool = False
    # None: as the source or the operator's `testing.regressions` says
    regressions: Literal["block", "warn", "ignore"] | None = None

    @field_validator("result_path")
    @classmethod
    def _result_path_inside(cls, value: str | None) -> str | None:
        return None if value is None else _inside_pack(value)


class Dependency(_Strict):
    """Another pack this pack needs, with an optional version range."""

    ref: str
    version: str = "*"

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        return check_ref(value)

    @field_validator("version")
    @classmethod
    def _constraint(cls, value: str) -> str:
        Constraint(value)
        return value

    @property
    def constraint(self) -> Constraint:
        return Constraint(self.version)

    def __str__(self) -> str:
        return self.ref if self.version in ("", "*") else f"{self.ref} {self.version}"


_DEPENDENCY_STRING = re.compile(r"^\s*(?P<ref>[^\s@<>=!^~]+)\s*@?\s*(?P<range>.*)$")


def dependency_from(value: Any) -> Any:
    """Accept `core`, `core>=1.2.0`, `core@^1.2` and `{ref: core, version: ...}`."""
    if isinstance(value, str):
        match = _DEPENDENCY_STRING.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a pack dependency")
        return {"ref": match["ref"], "version": match["range"].strip() or "*"}
    return value


def check_ref(value: str) -> str:
    if not REF_PATTERN.match(value):
        raise ValueError(
            f"{value!r} is not a valid ref (lowercase letters, digits, '_' and '-', "
            "starting with a letter)"
        )
    return value


class PackManifest(BaseModel):
    """The whole pack.yaml. Fields follow Attune; `extras` holds keys Attune added later.

    Both spellings Attune knows are read: its own core pack writes `label`, `conf_schema`,
    `meta` and `tags`, its register route reads `name`, `config_schema`, `metadata` and
    `keywords`. A pack without a label is labelled with its ref, as Attune's route does.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    ref: str
    label: str | None = Field(default=None, validation_alias=AliasChoices("label", "name"))
    description: str | None = None
    version: str
    author: str | None = None
    email: str | None = None
    system: bool = False
    enabled: bool = True
    conf_schema: ConfSchema | None = Field(
        default=None, validation_alias=AliasChoices("conf_schema", "config_schema")
    )
    config: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    meta: dict[str, Any] = Field(
        default_factory=dict, validation_alias=AliasChoices("meta", "metadata")
    )
    tags: list[str] = Field(default_factory=list, validation_alias=AliasChoices("tags", "keywords"))
    runtime_deps: list[str] = Field(default_factory=list)
    dependencies: list[Dependency] = Field(default_factory=list)
    worker_selector: dict[str, Any] | None = None
    worker_tolerations: list[Any] | None = None
    worker_affinity: dict[str, Any] | None = None
    testing: TestingSection | None = None

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        check_ref(value)
        if len(value) < 2:
            raise ValueError(
                f"{value!r} is too short: Attune's pack refs have two characters or more"
            )
        return value

    @property
    def display_label(self) -> str:
        return self.label or self.ref

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(
                f'{value!r} was read as a number; quote it (version: "{value}") '
                "and use a semantic version such as 1.0.0"
            )
        if isinstance(value, str):
            parse_version(value)
        return value

    @field_validator("dependencies", mode="before")
    @classmethod
    def _dependencies(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [dependency_from(item) for item in value]
        return value

    @field_validator("config", mode="after")
    @classmethod
    def _config_matches_schema(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        schema = info.data.get("conf_schema")
        return schema.apply(value) if isinstance(schema, ConfSchema) else value

    @property
    def extras(self) -> dict[str, Any]:
        """Top-level keys this version of attuned does not know."""
        return dict(self.model_extra or {})

    @property
    def meta_python_dependencies(self) -> list[str]:
        deps = self.meta.get("python_dependencies", [])
        return [str(d) for d in deps] if isinstance(deps, list) else []


class LoadedManifest(BaseModel):
    """A manifest plus where it came from and the warnings it raised."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    manifest: PackManifest
    path: Path
    warnings: list[Problem] = Field(default_factory=list)


def load_manifest(pack_dir: Path) -> LoadedManifest:
    """Read and validate `<pack_dir>/pack.yaml`; raise ValidationFailed naming file and line."""
    if not pack_dir.is_dir():
        raise ValidationFailed([Problem(pack_dir, "pack directory not found")])
    path = pack_dir / MANIFEST_NAME
    if not path.is_file():
        raise ValidationFailed([Problem(path, "no pack.yaml in the pack directory")])
    data = read_yaml(path)
    manifest = load_model(path, PackManifest, data)
    warnings: list[Problem] = []
    if manifest.extras:
        lines = line_map(path)
        warnings = [
            Problem(path, "unknown field, kept as metadata", locate(lines, (key,)), key)
            for key in manifest.extras
        ]
    return LoadedManifest(manifest=manifest, path=path, warnings=warnings)
