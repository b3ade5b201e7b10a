"""attuned show REF: one pack, its components and its latest test result."""

from __future__ import annotations

import argparse
from typing import Any

from attuned.cli.common import add_common, execution_dict, open_registry, pack_dict, print_json
from attuned.cli.summary import render_result
from attuned.cli.verbs import help_of
from attuned.errors import Problem, ValidationFailed
from attuned.store import repository
from attuned.testing.results import PackTestResult


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("show", help=help_of("show"))
    parser.add_argument("ref")
    add_common(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with open_registry(args) as registry, registry.db.read() as session:
        record = repository.get_pack(session, args.ref)
        if record is None:
            raise ValidationFailed([Problem(None, f"pack {args.ref!r} is not registered")])
        components = repository.components_of(session, record.id)
        latest = next(iter(repository.executions(session, args.ref, limit=1)), None)
    if args.json:
        print_json(
            {
                "pack": pack_dict(record),
                "components": [
                    {"kind": c.kind, "id": c.id, "ref": c.ref, **c.details} for c in components
                ],
                "latest_test": execution_dict(latest, full=True) if latest else None,
            }
        )
        return 0
    print(f"{record.ref} {record.version}  {record.label}")
    if record.description:
        print(f"  {record.description}")
    if record.managed:
        print(f"  digest {record.digest}")
        print(f"  origin {record.origin}")
    else:
        print("  not registered by attuned (Attune's own, or replaced behind attuned's back)")
    print(f"  served at {record.storage_path or '-'}")
    print(
        f"  registered {record.created_at:%Y-%m-%d %H:%M:%S}, "
        f"updated {record.updated_at:%Y-%m-%d %H:%M:%S}"
    )
    print(f"components ({len(components)}):")
    for c in components:
        print(f"  {c.kind:<19} {c.ref}{_detail(c.kind, c.details)}")
    if latest is None:
        print("latest test: none")
    else:
        print(
            f"latest test ({latest.trigger_type}, {latest.outcome}, "
            f"{latest.execution_time:%Y-%m-%d %H:%M:%S}):"
        )
        print(render_result(PackTestResult.model_validate(latest.result)))
    return 0


def _detail(kind: str, details: dict[str, Any]) -> str:
    """The one column that says most about a component row."""
    if kind == "rule":
        return f"  ({details['trigger_ref']} -> {details['action_ref']})"
    if kind == "sensor":
        return f"  (runtime {details['runtime_ref']})"
    if kind == "action" and details.get("workflow_def") is not None:
        return "  (workflow)"
    if kind == "action" and details.get("runtime") is None:
        return "  (no runtime)"
    return ""
