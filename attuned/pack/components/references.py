"""The triggers and actions that a pack's rules and sensors name, the pack's own or others'.

Those of other packs are checked against Attune's tables at registration, so the registry
asks for them (`external_refs`) without reading the pack again.
"""

from __future__ import annotations

from attuned.pack.components.models import Component, RuleSpec, SensorSpec, qualify


def references(component: Component, pack_ref: str) -> list[tuple[str, str, str]]:
    """(field, kind, qualified ref) of every trigger and action a rule or sensor names."""
    spec = component.spec
    if isinstance(spec, RuleSpec):
        return [
            ("trigger_ref", "trigger", qualify(pack_ref, spec.trigger_ref)),
            ("action_ref", "action", qualify(pack_ref, spec.action_ref)),
        ]
    if isinstance(spec, SensorSpec):
        field_name = "trigger_types" if spec.trigger_types is not None else "trigger_type"
        return [(field_name, "trigger", ref) for ref in spec.triggers(pack_ref)]
    return []


def external_refs(components: list[Component], pack_ref: str) -> dict[str, set[str]]:
    """Triggers and actions of other packs that rules and sensors use, by kind (checked
    against Attune's tables at registration)."""
    refs: dict[str, set[str]] = {"trigger": set(), "action": set()}
    for component in components:
        for _field, kind, ref in references(component, pack_ref):
            if ref.rpartition(".")[0] != pack_ref:
                refs[kind].add(ref)
    return refs
