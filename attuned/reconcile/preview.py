"""What the next reconcile pass would do, worked out without doing any of it (`attuned plan`).

The sources are read in place (`reconcile.inplace`: no snapshots, nothing written). The plan
itself is the daemon's: `planner.plan` on the same kind of `Desired`, with the actual state
and the remembered failures read from the database.

The diff (`diff_components`) and the report (`build`) are pure functions of plain values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attuned.pack.components import KINDS, Component, Workflow
from attuned.pack.loader import Pack, load_pack
from attuned.reconcile.inplace import ENTRY_ERRORS, Scanned, desired_of
from attuned.reconcile.model import (
    Action,
    ActionKind,
    ActualPack,
    Desired,
    InvalidCandidate,
    Plan,
)
from attuned.store.attune.reader import ComponentRow

# Attune's table name -> the kind `pack.components` calls it
_KIND_OF_TABLE = {"workflow_definition": "workflow"}
_KIND_ORDER = {kind: i for i, kind in enumerate(KINDS)}
CHANGING = ("install", "upgrade", "reinstall", "remove")
# the summary's "blocked": held back for a reason; the rest (noop, keep, suspended) "unchanged"
HELD_BACK = ("blocked", "invalid", "conflict", "failed", "wait")

Key = tuple[str, str]  # (kind, ref)
# a component's definition as written, or None where only its ref is known (database rows)
Components = Mapping[Key, Mapping[str, Any] | None]


# -- the component diff (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class ComponentChange:
    kind: str
    ref: str
    fields: tuple[str, ...] = ()  # changed: the top-level keys whose values differ

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "ref": self.ref}
        if self.fields:
            data["fields"] = list(self.fields)
        return data


@dataclass(frozen=True)
class ComponentDiff:
    added: tuple[ComponentChange, ...] = ()
    changed: tuple[ComponentChange, ...] = ()
    removed: tuple[ComponentChange, ...] = ()
    compared: str = "definitions"  # or "refs": the served side came from database rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": [c.as_dict() for c in self.added],
            "changed": [c.as_dict() for c in self.changed],
            "removed": [c.as_dict() for c in self.removed],
            "compared": self.compared,
        }


def components_map(components: Iterable[Component]) -> dict[Key, Mapping[str, Any] | None]:
    """A pack's components by (kind, ref), with their definitions as written."""
    return {(c.kind, c.ref): c.definition for c in components}


def rows_map(rows: Iterable[ComponentRow]) -> dict[Key, Mapping[str, Any] | None]:
    """A served pack's components from Attune's tables: refs only, no definitions."""
    return {(_KIND_OF_TABLE.get(r.kind, r.kind), r.ref): None for r in rows}


def as_rows(components: Iterable[Component]) -> dict[Key, Mapping[str, Any] | None]:
    """A pack's components as Attune's tables will hold them, refs only: a standalone
    workflow also makes a companion action of its ref."""
    keys: dict[Key, Mapping[str, Any] | None] = {}
    for c in components:
        keys[(c.kind, c.ref)] = None
        if isinstance(c.spec, Workflow) and c.spec.action is None:
            keys[("action", c.ref)] = None
    return keys


def diff_components(
    old: Components, new: Components, *, compared: str = "definitions"
) -> ComponentDiff:
    """What replacing `old` with `new` adds, changes (same kind and ref, another
    definition) and removes; a definition that is None on either side is not compared."""
    changed = []
    for key in sorted(set(old) & set(new), key=_order):
        before, after = old[key], new[key]
        if before is not None and after is not None and before != after:
            changed.append(ComponentChange(*key, changed_fields(before, after)))
    return ComponentDiff(
        added=tuple(ComponentChange(*k) for k in sorted(set(new) - set(old), key=_order)),
        changed=tuple(changed),
        removed=tuple(ComponentChange(*k) for k in sorted(set(old) - set(new), key=_order)),
        compared=compared,
    )


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)))


def _order(key: Key) -> tuple[int, str]:
    """Attune's load order by kind, then by ref."""
    return _KIND_ORDER.get(key[0], len(_KIND_ORDER)), key[1]


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """The components of the version a pack serves now, and where they were read."""

    components: Components
    compared: str = "definitions"  # "refs": only the database's rows were at hand


@dataclass(frozen=True)
class Policy:
    """What a source's configuration says about testing its packs."""

    skip_tests: bool = False
    force: bool = False


@dataclass(frozen=True)
class PackPreview:
    ref: str | None  # None: an invalid entry whose pack.yaml names no ref
    action: str  # an ActionKind value, or "invalid"
    reason: str = ""
    source: str | None = None
    entry: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    tests: str | None = None  # "run ...", "skipped (why)", "refused (why)"; None: no registration
    components: ComponentDiff | None = None  # only for changes

    @property
    def changes(self) -> bool:
        return self.action in CHANGING

    def as_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "action": self.action,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "source": self.source,
            "entry": self.entry,
            "reason": self.reason,
            "tests": self.tests,
            "components": self.components.as_dict() if self.components else None,
        }


@dataclass(frozen=True)
class SourceView:
    name: str
    readable: bool
    error: str | None
    revision: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "readable": self.readable,
            "error": self.error,
            "revision": self.revision,
        }


@dataclass(frozen=True)
class Preview:
    packs: tuple[PackPreview, ...]
    sources: tuple[SourceView, ...] = ()

    @property
    def changes(self) -> bool:
        return any(p.changes for p in self.packs)

    def summary(self) -> dict[str, int]:
        counts = {kind: 0 for kind in (*CHANGING, "blocked", "unchanged")}
        for pack in self.packs:
            if pack.action in CHANGING:
                counts[pack.action] += 1
            elif pack.action in HELD_BACK:
                counts["blocked"] += 1
            else:
                counts["unchanged"] += 1
        return counts

    def only_source(self, name: str) -> Preview:
        """The packs that come from (or were registered from) source `name`."""
        return Preview(
            tuple(p for p in self.packs if p.source == name),
            tuple(s for s in self.sources if s.name == name),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "changes": self.changes,
            "packs": [p.as_dict() for p in self.packs],
            "summary": self.summary(),
            "sources": [s.as_dict() for s in self.sources],
        }


def build(
    plan: Plan,
    scans: Sequence[Scanned],
    actual: Mapping[str, ActualPack],
    policies: Mapping[str, Policy],
    served: Callable[[str], Served | None],
    desired: Desired | None = None,
) -> Preview:
    """One entry per planned action (in the planner's order) and per invalid entry; the
    component diff of every change; whether its tests would run. `served(ref)`: the
    components of the version `ref` serves now (None: unknown)."""
    packs = {(s.state.name, entry): p for s in scans for entry, p in s.packs.items()}
    invalid = (desired or desired_of(scans)).invalid
    kept_for_invalid = {(i.source, i.ref_hint) for i in invalid if i.ref_hint is not None}
    entries: list[PackPreview] = []
    for action in plan.actions:
        current = actual.get(action.ref)
        source = current.source if current else None
        if action.kind is ActionKind.KEEP and (source, action.ref) in kept_for_invalid:
            continue  # told with the invalid entry itself
        entries.append(_pack_preview(action, current, packs, policies, served))
    entries.extend(_invalid_preview(i, actual) for i in invalid)
    views = tuple(
        SourceView(s.state.name, s.state.readable, s.state.error, s.revision) for s in scans
    )
    return Preview(tuple(entries), views)


def _pack_preview(
    action: Action,
    current: ActualPack | None,
    packs: Mapping[tuple[str, str], Pack],
    policies: Mapping[str, Policy],
    served: Callable[[str], Served | None],
) -> PackPreview:
    candidate = action.candidate
    pack = packs.get((candidate.source, candidate.entry)) if candidate else None
    diff = None
    if action.kind in (ActionKind.INSTALL, ActionKind.UPGRADE, ActionKind.REINSTALL):
        old = served(action.ref) if current is not None else Served({})
        diff = _diff(old, pack)
    elif action.kind is ActionKind.REMOVE:
        diff = _diff(served(action.ref), None)
    tests = None
    if candidate is not None and pack is not None and action.changes_something:
        tests = verdict_on_tests(pack, candidate.source, policies.get(candidate.source, Policy()))
    return PackPreview(
        ref=action.ref,
        action=action.kind.value,
        reason=action.reason,
        source=candidate.source if candidate else (current.source if current else None),
        entry=candidate.entry if candidate else None,
        from_version=action.current_version,
        to_version=candidate.version if candidate else None,
        tests=tests,
        components=diff,
    )


def _diff(old: Served | None, new: Pack | None) -> ComponentDiff:
    """Served -> candidate; a side that is unknown counts as having no components."""
    old = old or Served({}, compared="refs")
    if new is None:
        return diff_components(old.components, {}, compared=old.compared)
    if old.compared == "refs":
        return diff_components(old.components, as_rows(new.components), compared="refs")
    return diff_components(old.components, components_map(new.components))


def _invalid_preview(invalid: InvalidCandidate, actual: Mapping[str, ActualPack]) -> PackPreview:
    current = actual.get(invalid.ref_hint) if invalid.ref_hint else None
    reason = "; ".join(invalid.problems)
    if current is not None and current.source == invalid.source:
        reason += f" (serving {current.version} until it is fixed)"
    return PackPreview(
        ref=invalid.ref_hint,
        action="invalid",
        reason=reason,
        source=invalid.source,
        entry=invalid.entry,
        from_version=current.version if current else None,
    )


def verdict_on_tests(pack: Pack, source: str, policy: Policy) -> str:
    """Whether registering `pack` from `source` runs its tests, as the applier decides."""
    if policy.skip_tests:
        return f"skipped (source {source!r} sets skip_tests)"
    testing = pack.manifest.testing
    if testing is None or not testing.enabled:
        why = "has no testing section" if testing is None else "has testing.enabled: false"
        return (
            f"refused (the pack {why}; its registration will fail: add tests, or set "
            f"skip_tests on source {source!r})"
        )
    if policy.force:
        return f"run (source {source!r} forces: registered even if they fail)"
    return "run"


def served_components(
    active_dir: Path | None, rows: Callable[[], Sequence[ComponentRow]] | None
) -> Served | None:
    """The served version's components: from its directory in the pack store, else (it is
    missing or no longer loads) from Attune's rows, refs only; None when neither is there."""
    if active_dir is not None:
        try:
            return Served(components_map(load_pack(active_dir).components))
        except ENTRY_ERRORS:
            pass
    if rows is None:
        return None
    return Served(rows_map(rows()), compared="refs")
