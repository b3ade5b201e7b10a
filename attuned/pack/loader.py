"""Everything known about a pack directory before it touches the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from attuned.errors import Problem, ValidationFailed
from attuned.pack.components import Component, load_components
from attuned.pack.content import PackFile, digest, list_files
from attuned.pack.manifest import LoadedManifest, PackManifest, load_manifest
from attuned.pack.requirements import requirement_problems
from attuned.yamlfile import keeping_reads


@dataclass(frozen=True)
class Pack:
    """A validated pack: manifest, components, the exact file list and its digest."""

    path: Path
    manifest: PackManifest
    components: list[Component]
    files: list[PackFile]
    digest: str
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return self.manifest.ref

    @property
    def version(self) -> str:
        return self.manifest.version


def load_pack(pack_dir: Path) -> Pack:
    """Validate manifest, content and components; collect every problem before raising.

    The digest is taken over the bytes that were validated (each file is read once), so two
    directories with the same digest validate alike: a copy is verified by its digest
    alone.
    """
    with keeping_reads() as reads:
        loaded: LoadedManifest = load_manifest(pack_dir)
        problems: list[Problem] = []
        files: list[PackFile] = []
        listed: list[PackFile] | None = None
        components: list[Component] = []
        try:
            files = listed = list_files(pack_dir)
        except ValidationFailed as exc:
            problems.extend(exc.problems)
        warnings = list(loaded.warnings)
        try:
            components, component_warnings = load_components(pack_dir, loaded.manifest, listed)
            warnings.extend(component_warnings)
        except ValidationFailed as exc:
            problems.extend(exc.problems)
        problems.extend(requirement_problems(pack_dir, loaded.manifest.meta))
    if problems:
        raise ValidationFailed(problems)
    return Pack(
        path=pack_dir,
        manifest=loaded.manifest,
        components=components,
        files=files,
        digest=digest(pack_dir, files, reads),
        warnings=warnings,
    )
