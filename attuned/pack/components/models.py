"""What each kind of component file holds, as validated models, and the rows they become.

Each kind has its model (`SPECS`); a file's fields beyond the model are kept as written,
since Attune ignores keys it does not know. `Component` is one file read; `Workflow` is the
workflow definition row a workflow file becomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    field_validator,
)

# kind -> directory, in Attune's load order; workflows come after them
DIRECTORIES: dict[str, str] = {
    "permission_set": "permission_sets",
    "runtime": "runtimes",
    "trigger": "triggers",
    "action": "actions",
    "rule": "rules",
    "sensor": "sensors",
}
KINDS = (*DIRECTORIES, "workflow")
NATIVE_RUNNERS = frozenset({"native", "builtin", "standalone"})


class _Spec(BaseModel):
    """Fields every component file has; anything else is kept as written (Attune ignores
    keys it does not know)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    ref: str
    label: str | None = None
    description: str | None = None

    @field_validator("ref", mode="before")
    @classmethod
    def _ref_text(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value.strip() if isinstance(value, str) else value


class PermissionSetSpec(_Spec):
    grants: list[Any] = Field(default_factory=list)


class RuntimeVersionSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    version: str
    execution_config: dict[str, Any] = Field(default_factory=dict)
    distributions: dict[str, Any] = Field(default_factory=dict)
    is_default: bool = False
    meta: dict[str, Any] = Field(default_factory=dict)


class RuntimeSpec(_Spec):
    name: str | None = None
    aliases: list[str] = Field(default_factory=list)
    distributions: dict[str, Any] = Field(default_factory=dict)
    installation: Any = None
    execution_config: dict[str, Any] = Field(default_factory=dict)
    versions: list[RuntimeVersionSpec] | None = None


class TriggerSpec(_Spec):
    enabled: bool = True
    parameters: Any = None
    output: Any = None


Retention = Literal["versions", "days", "hours", "minutes"]


class _Placement(_Spec):
    """What actions and sensors share: where they run and how long their logs are kept."""

    runner_type: str | None = None
    entry_point: str | None = None
    parameters: Any = None
    runtime_version: str | None = None
    worker_selector: dict[str, Any] = Field(default_factory=dict)
    worker_tolerations: list[Any] = Field(default_factory=list)
    worker_affinity: dict[str, Any] = Field(default_factory=dict)
    log_retention_policy: Retention | None = None
    log_retention_limit: PositiveInt | None = None
    artifact_retention_policy: Retention | None = None
    artifact_retention_limit: PositiveInt | None = None


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class ActionSpec(_Placement):
    workflow_file: str | None = None
    output: Any = None
    parameter_delivery: Literal["stdin", "file"] = "stdin"
    parameter_format: Literal["dotenv", "json", "yaml"] = "json"
    output_format: Literal["text", "json", "yaml", "jsonl"] = "text"
    required_worker_runtimes: dict[str, Any] = Field(default_factory=dict)
    accesses_mcp: bool = False
    default_execution_permission_set_refs: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    _case_blind = field_validator(
        "parameter_delivery", "parameter_format", "output_format", mode="before"
    )(_lower)

    @property
    def runner(self) -> str | None:
        """The runner that picks the action's runtime: none for a workflow action."""
        return None if self.workflow_file else (self.runner_type or "shell")


class RuleSpec(_Spec):
    trigger_ref: str
    action_ref: str
    enabled: bool = True
    conditions: Any = Field(default_factory=dict)
    action_params: Any = Field(default_factory=dict)
    trigger_params: Any = Field(default_factory=dict)
    permission_set_refs: str | list[str] | None = Field(
        default=None, validation_alias=AliasChoices("permission_set_refs", "permission_set_ref")
    )

    @field_validator("permission_set_refs", mode="after")
    @classmethod
    def _no_empty_refs(cls, value: str | list[str] | None) -> str | list[str] | None:
        refs = [value] if isinstance(value, str) else value or []
        if any(not r.strip() for r in refs):
            raise ValueError("permission set refs must not be empty")
        return value


class SensorSpec(_Placement):
    enabled: bool = True
    config: Any = Field(default_factory=dict)
    trigger_types: list[str] | None = None
    trigger_type: str | None = None

    @property
    def runner(self) -> str:
        return self.runner_type or "native"

    def triggers(self, pack_ref: str) -> list[str]:
        """The triggers it fires, qualified (a bare name is one of the pack's own)."""
        names = self.trigger_types if self.trigger_types is not None else []
        if self.trigger_types is None and self.trigger_type:
            names = [self.trigger_type]
        return [qualify(pack_ref, n) for n in names]


SPECS: dict[str, type[_Spec]] = {
    "permission_set": PermissionSetSpec,
    "runtime": RuntimeSpec,
    "trigger": TriggerSpec,
    "action": ActionSpec,
    "rule": RuleSpec,
    "sensor": SensorSpec,
}


@dataclass(frozen=True)
class Workflow:
    """A workflow definition row to be: from an action's `workflow_file` (`action` names
    it) or a standalone file (then a companion action of the same ref is made, as Attune's
    workflow registrar does)."""

    ref: str
    label: str
    description: str | None
    version: str
    parameters: Any
    output: Any
    tags: list[str]
    definition: dict[str, Any]
    file: str  # relative to the pack root
    action: str | None = None  # the action that links it; None: standalone
    entrypoint: str = ""  # the companion action's entrypoint (standalone only)


@dataclass(frozen=True)
class Component:
    kind: str
    ref: str
    file: str  # relative to the pack root
    spec: Any  # the kind's validated model (`SPECS`), or a Workflow
    definition: dict[str, Any] = field(default_factory=dict)  # the file as written

    @property
    def name(self) -> str:
        return self.ref.rpartition(".")[2]


def qualify(pack_ref: str, ref: str) -> str:
    """Attune's rule for rule and sensor references: a bare name is the pack's own."""
    return ref if "." in ref else f"{pack_ref}.{ref}"


def generate_label(name: str) -> str:
    """Attune's label for a component without one: `http_request` -> `Http Request`."""
    return " ".join(word[:1].upper() + word[1:] for word in name.split("_"))


def is_native(runner: str | None) -> bool:
    return (runner or "").lower() in NATIVE_RUNNERS
