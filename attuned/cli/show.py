"""attuned show REF: one pack, its components and its latest test result."""

from __future__ import annotations

import argparse

from attuned.cli.common import add_common, execution_dict, open_registry, pack_dict, print_json
from attuned.cli.summary import render_result
from attuned.errors import Problem, ValidationFailed
from attuned.store import repository
from attuned.testing.results import PackTestResult


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("show", help="show a registered pack")
    parser.add_argument("ref")
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with open_registry(args) as registry, registry.db.read() as session:
        record = repository.get_pack(session, args.ref)
        if record is None or record.id is None:
            raise ValidationFailed([Problem(None, f"pack {args.ref!r} is not registered")])
        components = repository.components_of(session, record.id)
        latest = next(iter(repository.executions(session, args.ref, limit=1)), None)
    if args.json:
        print_json(
            {
                "pack": pack_dict(record),
                "components": [
                    {
                        "kind": c.kind,
                        "ref": c.ref,
                        "name": c.name,
                        "file": c.file,
                        "definition": c.definition,
                    }
                    for c in components
                ],
                "latest_test": execution_dict(latest, full=True) if latest else None,
            }
        )
        return 0
    print(f"{record.ref} {record.version}  {record.label}")
    print(f"  {record.description}")
    print(f"  digest {record.digest}")
    print(f"  origin {record.origin}")
    print(
        f"  registered {record.created_at:%Y-%m-%d %H:%M:%S}, "
        f"updated {record.updated_at:%Y-%m-%d %H:%M:%S}"
    )
    print(f"components ({len(components)}):")
    for c in components:
        print(f"  {c.kind:<15} {c.ref}")
    if latest is None:
        print("latest test: none")
    else:
        print(
            f"latest test ({latest.trigger_type}, {latest.outcome}, "
            f"{latest.execution_time:%Y-%m-%d %H:%M:%S}):"
        )
        print(render_result(PackTestResult.model_validate(latest.result)))
    return 0
