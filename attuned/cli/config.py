"""attuned config check|show: validate the configuration, or print it with every default."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from attuned.cli.common import add_common, config_of, print_json
from attuned.cli.verbs import help_of
from attuned.config import environment_overrides
from attuned.settings.envs import redact_url


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("config", help=help_of("config"))
    add_common(parser)  # `attuned config --config X ...` too
    verbs = parser.add_subparsers(dest="config_verb", required=True)
    check = verbs.add_parser("check", help="validate; exit 2 naming the key and line if wrong")
    add_common(check)
    show = verbs.add_parser("show", help="print the effective configuration, defaults filled in")
    add_common(show)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_of(args)  # raises ConfigError (exit 2) with file, line and key
    where = str(config.path) if config.path else "built-in defaults (no config file found)"
    overridden = sorted(_keys(environment_overrides()))
    if args.config_verb == "check":
        if args.json:
            print_json({"valid": True, "file": where, "environment_overrides": overridden})
        else:
            print(f"configuration OK: {where}")
            for key in overridden:
                print(f"  overridden by the environment: {key}")
        return 0
    effective = json.loads(config.model_dump_json())
    effective["_resolved"] = {
        "config_file": where,
        "packs_dir": str(config.packs_path),
        "status_file": str(config.status_path),
        "database_url": _redact(config.database_url),
        "environment_overrides": overridden,
    }
    if effective.get("database", {}).get("url"):
        effective["database"]["url"] = _redact(effective["database"]["url"])
    envs = effective.get("environments", {})
    for key in ("index_url", "extra_index_urls", "find_links"):  # tokens live in index URLs
        value = envs.get(key)
        if isinstance(value, str):
            envs[key] = redact_url(value)
        elif isinstance(value, list):
            envs[key] = [redact_url(str(v)) for v in value]
    if args.json:
        print_json(effective)
    else:
        yaml.safe_dump(effective, sys.stdout, sort_keys=False)
    return 0


def _keys(data: dict[str, object], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        if isinstance(value, dict):
            keys += _keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _redact(url: str) -> str:
    """Hide a password in a database URL: shown configs end up in tickets and chats."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy can parse: show nothing of it
        return "<unparsable URL>"
