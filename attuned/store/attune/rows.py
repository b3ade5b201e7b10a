"""A pack as the rows of Attune's tables: column <- pack.yaml field, table by table.

Pure: no database, no files. Foreign keys that depend on what the database holds (a pack's
id, the runtime a runner type names, the trigger and action a rule uses) are given by ref
here and resolved by `writer`. Every mapping follows Attune's loader
(crates/common/src/pack_registry/loader.rs) and register route (crates/api/src/routes/
packs.rs); docs/attune-database.md has the same tables for people. A test run's row is
`execution_rows`'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from attuned.pack.components import (
    ActionSpec,
    Component,
    PermissionSetSpec,
    RuleSpec,
    RuntimeSpec,
    SensorSpec,
    TriggerSpec,
    Workflow,
    generate_label,
    qualify,
)
from attuned.pack.loader import Pack
from attuned.pack.manifest import Dependency, PackManifest

Row = dict[str, Any]
INSTALLATION_METHOD = "attuned"
_OPERATOR = re.compile(r"^[<>=!^~]")
_VERSION_PARTS = re.compile(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?")


@dataclass(frozen=True)
class Installation:
    """Where the pack came from and where it is served (the `pack` table's install columns).
    `source_url` must carry no credentials: callers pass it redacted."""

    source_type: str  # local_directory | local_archive | git (Attune's names)
    source_url: str | None
    source_ref: str | None  # a git source's commit
    storage_path: str  # the served path: <packs_dir>/<ref>


@dataclass(frozen=True)
class RuntimeRows:
    row: Row
    versions: list[Row] | None  # None: the file has no `versions` list


@dataclass(frozen=True)
class ActionRows:
    row: Row
    runner: str | None  # picks the `runtime`; None: a workflow action (no runtime)
    workflow: str | None = None  # ref of the workflow definition it links


@dataclass(frozen=True)
class RuleRows:
    row: Row  # carries trigger_ref and action_ref; the ids are resolved from them


@dataclass(frozen=True)
class SensorRows:
    row: Row
    runner: str
    triggers: list[str]  # refs of the triggers it fires (they get `trigger.sensor`)


@dataclass(frozen=True)
class PackRows:
    pack: Row  # without `config`: the writer merges it with what operators set
    config: dict[str, Any]
    permission_sets: list[Row] = field(default_factory=list)
    runtimes: list[RuntimeRows] = field(default_factory=list)
    triggers: list[Row] = field(default_factory=list)
    actions: list[ActionRows] = field(default_factory=list)
    rules: list[RuleRows] = field(default_factory=list)
    sensors: list[SensorRows] = field(default_factory=list)
    workflows: list[Row] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return str(self.pack["ref"])


def dependency_string(dep: Dependency) -> str:
    """How `pack.dependencies TEXT[]` holds one: `core`, `core>=1.0.0,<2`, `core@1.2.3`.
    Attune keeps pack.yaml's strings as written; attuned writes the same forms, which its
    own parser reads back."""
    if dep.version in ("", "*"):
        return dep.ref
    return f"{dep.ref}{dep.version}" if _OPERATOR.match(dep.version) else f"{dep.ref}@{dep.version}"


def pack_row(manifest: PackManifest, digest: str, install: Installation, now: datetime) -> Row:
    return {
        "ref": manifest.ref,
        "label": manifest.display_label,
        "description": manifest.description,
        "version": manifest.version,
        "conf_schema": manifest.conf_schema.model_dump_raw() if manifest.conf_schema else {},
        "meta": dict(manifest.meta),
        "tags": list(manifest.tags),
        "runtime_deps": list(manifest.runtime_deps),
        "dependencies": [dependency_string(d) for d in manifest.dependencies],
        "is_standard": manifest.system,
        "source_type": install.source_type,
        "source_url": install.source_url,
        "source_ref": install.source_ref,
        "checksum": digest,
        "checksum_verified": True,
        "installed_at": now,
        "installation_method": INSTALLATION_METHOD,
        "storage_path": install.storage_path,
    }


def pack_rows(pack: Pack, install: Installation, now: datetime) -> PackRows:
    rows = PackRows(
        pack=pack_row(pack.manifest, pack.digest, install, now), config=dict(pack.manifest.config)
    )
    for component in pack.components:
        add_component(rows, component, pack.ref)
    return rows


def add_component(rows: PackRows, component: Component, pack_ref: str) -> None:
    """Append the rows of one component to `rows` (its table is chosen by its kind)."""
    spec, ref = component.spec, component.ref
    common = {"ref": ref, "pack_ref": pack_ref}
    # Attune's loader labels triggers, actions, rules and sensors it finds without one
    label = (None if isinstance(spec, Workflow) else spec.label) or generate_label(component.name)
    if isinstance(spec, PermissionSetSpec):
        rows.permission_sets.append(
            {**common, "label": spec.label, "description": spec.description, "grants": spec.grants}
        )
    elif isinstance(spec, RuntimeSpec):
        rows.runtimes.append(_runtime(common, spec))
    elif isinstance(spec, TriggerSpec):
        rows.triggers.append(
            {
                **common,
                "label": label,
                "description": spec.description,
                "enabled": spec.enabled,
                "is_adhoc": False,
                "param_schema": spec.parameters,
                "out_schema": spec.output,
            }
        )
    elif isinstance(spec, ActionSpec):
        rows.actions.append(_action(common, spec, label))
    elif isinstance(spec, RuleSpec):
        rows.rules.append(_rule(common, spec, label, pack_ref))
    elif isinstance(spec, SensorSpec):
        rows.sensors.append(
            SensorRows(
                {
                    **common,
                    "label": label,
                    "description": spec.description,
                    "entrypoint": spec.entry_point or "",
                    "runtime_version_constraint": spec.runtime_version,
                    "enabled": spec.enabled,
                    "param_schema": spec.parameters,
                    "config": spec.config,
                    **_placement(spec),
                },
                runner=spec.runner,
                triggers=spec.triggers(pack_ref),
            )
        )
    elif isinstance(spec, Workflow):
        _workflow(rows, common, spec)


def _placement(spec: ActionSpec | SensorSpec) -> Row:
    return {
        "worker_selector": spec.worker_selector,
        "worker_tolerations": spec.worker_tolerations,
        "worker_affinity": spec.worker_affinity,
        "log_retention_policy": spec.log_retention_policy,
        "log_retention_limit": spec.log_retention_limit,
        "artifact_retention_policy": spec.artifact_retention_policy,
        "artifact_retention_limit": spec.artifact_retention_limit,
    }


def _runtime(common: Row, spec: RuntimeSpec) -> RuntimeRows:
    versions = None
    if spec.versions is not None:
        versions = []
        for entry in spec.versions:
            major, minor, patch = version_parts(entry.version)
            versions.append(
                {
                    "runtime_ref": common["ref"],
                    "version": entry.version,
                    "version_major": major,
                    "version_minor": minor,
                    "version_patch": patch,
                    "execution_config": entry.execution_config,
                    "distributions": entry.distributions,
                    "is_default": entry.is_default,
                    "meta": entry.meta,
                }
            )
    return RuntimeRows(
        {
            **common,
            "description": spec.description,
            "name": spec.name or str(common["ref"]).rpartition(".")[2],
            "aliases": [a.lower() for a in spec.aliases],
            "distributions": spec.distributions,
            "installation": spec.installation,
            "execution_config": spec.execution_config,
            "auto_detected": False,
            "detection_config": {},
        },
        versions,
    )


def _action(common: Row, spec: ActionSpec, label: str) -> ActionRows:
    return ActionRows(
        {
            **common,
            "label": label,
            "description": spec.description,
            # a workflow action's entrypoint is its workflow file (Attune's loader)
            "entrypoint": spec.workflow_file or spec.entry_point or "",
            "runtime_version_constraint": spec.runtime_version,
            "required_worker_runtimes": spec.required_worker_runtimes,
            "param_schema": spec.parameters,
            "out_schema": spec.output,
            "is_adhoc": False,
            "parameter_delivery": spec.parameter_delivery,
            "parameter_format": spec.parameter_format,
            "output_format": spec.output_format,
            "accesses_mcp": spec.accesses_mcp,
            "default_execution_permission_set_refs": [
                r.strip() for r in spec.default_execution_permission_set_refs if r.strip()
            ],
            **_placement(spec),
        },
        runner=spec.runner,
    )


def _rule(common: Row, spec: RuleSpec, label: str, pack_ref: str) -> RuleRows:
    refs = spec.permission_set_refs
    return RuleRows(
        {
            **common,
            "label": label,
            "description": spec.description,
            "trigger_ref": qualify(pack_ref, spec.trigger_ref.strip()),
            "action_ref": qualify(pack_ref, spec.action_ref.strip()),
            "conditions": spec.conditions,
            "action_params": spec.action_params,
            "trigger_params": spec.trigger_params,
            "permission_set_refs": (
                None
                if refs is None
                else [r.strip() for r in ([refs] if isinstance(refs, str) else refs)]
            ),
            "enabled": spec.enabled,
            "is_adhoc": False,
            "owner_identity": None,
        }
    )


def _workflow(rows: PackRows, common: Row, spec: Workflow) -> None:
    rows.workflows.append(
        {
            **common,
            "label": spec.label,
            "description": spec.description,
            "version": spec.version,
            "param_schema": spec.parameters,
            "out_schema": spec.output,
            "definition": spec.definition,
            "tags": spec.tags,
        }
    )
    if spec.action is not None:  # linked from an action file: that action is the workflow's
        for index, linked in enumerate(rows.actions):
            if linked.row["ref"] == spec.action:
                rows.actions[index] = ActionRows(linked.row, None, workflow=spec.ref)
        return
    # a standalone workflow gets a companion action (Attune's workflow registrar)
    rows.actions.append(
        ActionRows(
            {
                **common,
                "label": spec.label,
                "description": spec.description,
                "entrypoint": spec.entrypoint,
                "runtime_version_constraint": None,
                "required_worker_runtimes": {},
                "worker_selector": {},
                "worker_tolerations": [],
                "worker_affinity": {},
                "param_schema": spec.parameters,
                "out_schema": spec.output,
                "is_adhoc": False,
                # what the database defaults them to: Attune's registrar leaves them out
                "parameter_delivery": "stdin",
                "parameter_format": "json",
                "output_format": "text",
                "accesses_mcp": False,
                "default_execution_permission_set_refs": [],
                "log_retention_policy": None,
                "log_retention_limit": None,
                "artifact_retention_policy": None,
                "artifact_retention_limit": None,
            },
            runner=None,
            workflow=spec.ref,
        )
    )


def version_parts(version: str) -> tuple[int | None, int | None, int | None]:
    """Attune's `extract_version_components`: the leading numbers of `3`, `3.12`, `3.12.1`."""
    match = _VERSION_PARTS.match(version)
    if not match:
        return None, None, None
    return tuple(int(g) if g is not None else None for g in match.groups())  # type: ignore[return-value]
