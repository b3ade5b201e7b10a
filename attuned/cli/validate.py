"""attuned validate PATH: manifest and components, no database."""

from __future__ import annotations

import argparse
from pathlib import Path

from attuned.cli.common import add_common, counted, print_json
from attuned.cli.verbs import help_of
from attuned.pack.loader import load_pack


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("validate", help=help_of("validate"))
    parser.add_argument("path", type=Path)
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    pack = load_pack(args.path)
    if args.json:
        print_json(
            {
                "valid": True,
                "ref": pack.ref,
                "version": pack.version,
                "digest": pack.digest,
                "components": [
                    {"kind": c.kind, "ref": c.ref, "file": c.file} for c in pack.components
                ],
                "warnings": [str(w) for w in pack.warnings],
            }
        )
        return 0
    for warning in pack.warnings:
        print(f"warning: {warning}")
    kinds: dict[str, int] = {}
    for component in pack.components:
        kinds[component.kind] = kinds.get(component.kind, 0) + 1
    components = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no components"
    print(f"{pack.ref} {pack.version} is valid ({components}; {counted(len(pack.files), 'file')})")
    return 0
