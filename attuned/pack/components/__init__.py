"""A pack's components, read as Attune's loader reads them and checked more strictly.

Attune's loader (crates/common/src/pack_registry/loader.rs) reads, in this order,
`permission_sets/`, `runtimes/`, `triggers/`, `actions/`, `rules/` and `sensors/` (the
`*.yaml`/`*.yml` files at the top of each), then workflows from `workflows/` and
`actions/workflows/`. Where Attune silently skips a file (no `ref`, a ref outside the pack,
a rule whose trigger or action is missing), attuned refuses it with a problem that names the
file, line and field: a pack registers completely or not at all.

The package's modules: `models` (what each kind of file holds), `files` (reading one file
and checking its ref and paths), `workflow_files` (linked and standalone workflows),
`loading` (the pack in load order, checked as a whole) and `references` (the triggers and
actions rules and sensors name).
"""

from attuned.pack.components.loading import load_components
from attuned.pack.components.models import (
    KINDS,
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
from attuned.pack.components.references import external_refs

__all__ = [
    "KINDS",
    "ActionSpec",
    "Component",
    "PermissionSetSpec",
    "RuleSpec",
    "RuntimeSpec",
    "SensorSpec",
    "TriggerSpec",
    "Workflow",
    "external_refs",
    "generate_label",
    "load_components",
    "qualify",
]
