"""Whether everything a pack needs is registered before it is: a registration must not
leave Attune with rules, sensors or dependencies that point at nothing."""

from __future__ import annotations

from sqlmodel import Session

from attuned.errors import DependencyError, Problem
from attuned.pack.components import external_refs
from attuned.pack.loader import Pack
from attuned.pack.manifest import MANIFEST_NAME
from attuned.store import repository


def check_dependencies(
    session: Session, pack: Pack, runnerless_sensors: list[tuple[str, str]]
) -> None:
    """Declared packs at satisfying versions, the other packs' triggers and actions
    that rules and sensors name, and the runtimes sensors run on must be registered (by
    attuned or by Attune itself)."""
    problems = _missing_packs(session, pack)
    problems.extend(_missing_components(session, pack, problems))
    files = {c.ref: c.file for c in pack.components if c.kind == "sensor"}
    problems.extend(
        Problem(
            pack.path / files[ref],
            f"runner_type {runner!r} names no registered runtime; register the pack "
            "that provides it first (core provides core.native, core.shell, ...)",
            field="runner_type",
        )
        for ref, runner in runnerless_sensors
    )
    if problems:
        raise DependencyError(problems)


def _missing_packs(session: Session, pack: Pack) -> list[Problem]:
    """The declared dependencies that are not registered, or not at a version they allow."""
    problems = []
    manifest_path = pack.path / MANIFEST_NAME
    for dep in pack.manifest.dependencies:
        found = repository.get_pack(session, dep.ref)
        if found is None:
            problems.append(
                Problem(
                    manifest_path,
                    f"depends on {dep}, which is not registered",
                    field="dependencies",
                )
            )
        elif not dep.constraint.allows(found.version):
            problems.append(
                Problem(
                    manifest_path,
                    f"depends on {dep}, but {dep.ref} {found.version} is registered",
                    field="dependencies",
                )
            )
    return problems


def _missing_components(
    session: Session, pack: Pack, missing_packs: list[Problem]
) -> list[Problem]:
    """Other packs' triggers and actions that rules and sensors name and nobody defines;
    not said again for a pack `missing_packs` already names."""
    problems: list[Problem] = []
    manifest_path = pack.path / MANIFEST_NAME
    wanted = external_refs(pack.components, pack.ref)
    known = repository.component_refs(session, wanted)
    for kind, refs in sorted(wanted.items()):
        for ref in sorted(refs - known[kind]):
            namespace = ref.rpartition(".")[0]
            if not any(p.message.startswith(f"depends on {namespace}") for p in missing_packs):
                problems.append(
                    Problem(
                        manifest_path,
                        f"rules or sensors use {kind} {ref!r}, which pack {namespace!r} "
                        "does not define",
                        field="dependencies",
                    )
                )
    return problems
