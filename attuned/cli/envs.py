"""attuned envs list|gc: the Python environments of packs, and their garbage collection."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from attuned.cli.common import add_common, config_of, counted, print_json, table
from attuned.cli.verbs import help_of
from attuned.durations import ago
from attuned.envs.python import PythonEnvironments
from attuned.envs.python.layout import KEY_LENGTH
from attuned.registry.upkeep import stored_pack_dirs
from attuned.registry.wiring import tester_for
from attuned.store.packstore import PackStore


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("envs", help=help_of("envs"))
    add_common(parser)  # `attuned envs --config X ...` too
    verbs = parser.add_subparsers(dest="envs_verb", required=True)
    listing = verbs.add_parser("list", help="every environment, its size and its users")
    add_common(listing)
    gc = verbs.add_parser("gc", help="remove environments no stored pack or snapshot uses")
    gc.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="remove only those unused this long (default environments.unused_grace)",
    )
    add_common(gc)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_of(args)
    environments = tester_for(config).environments
    assert environments is not None
    users: dict[str, list[str]] = {}
    dirs = stored_pack_dirs(PackStore(config.packs_path), config.snapshots_path)
    for pack_dir, key in environments.pack_keys(dirs).items():
        users.setdefault(key[:KEY_LENGTH], []).append(_user_name(pack_dir, config.snapshots_path))
    if args.envs_verb == "gc":
        return _gc(args, environments, users)
    return _list(args, environments, users)


def _user_name(pack_dir: Path, snapshots: Path) -> str:
    if pack_dir.parent == snapshots:
        return f"snapshot {pack_dir.name[:12]}"
    return pack_dir.name  # <ref>-<version>-<digest16>


def _list(
    args: argparse.Namespace, environments: PythonEnvironments, users: dict[str, list[str]]
) -> int:
    rows: list[dict[str, Any]] = []
    for env in environments.list():
        rows.append(
            {
                "key": env.key,
                "path": str(env.path),
                "complete": env.complete,
                "requirements": env.marker.get("requirements", []),
                "python_version": env.marker.get("python_version"),
                "created_at": env.marker.get("created_at"),
                "last_used": datetime.fromtimestamp(env.last_used, UTC).isoformat(),
                "size_bytes": env.size_bytes,
                "used_by": sorted(users.get(env.path.name, [])),
            }
        )
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(f"no environments under {environments.root}")
        return 0
    now = time.time()
    print(
        table(
            [
                [
                    row["key"][:KEY_LENGTH],
                    f"{row['size_bytes'] / 1e6:.1f} MB",
                    ago(now - datetime.fromisoformat(row["last_used"]).timestamp()) + " ago",
                    ", ".join(row["used_by"]) or ("-" if row["complete"] else "(incomplete)"),
                    ", ".join(row["requirements"]),
                ]
                for row in rows
            ],
            ["env", "size", "last used", "used by", "requirements"],
        )
    )
    return 0


def _gc(
    args: argparse.Namespace, environments: PythonEnvironments, users: dict[str, list[str]]
) -> int:
    removed = environments.collect_garbage(set(users), grace=args.grace)
    if args.json:
        print_json({"removed": [str(p) for p in removed]})
        return 0
    for path in removed:
        print(f"removed {path}")
    print(f"{counted(len(removed), 'environment')} removed")
    return 0
