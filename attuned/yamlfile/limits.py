"""The caps a YAML file from anyone meets, and the error that reports one of them.

Pack files come from anyone who can drop a folder or an archive, so reading one is bounded:
the caps live here, in one place, for the reading of the bytes and the building of nodes.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_BYTES = 1 << 20  # a component file is rarely 100 KiB
MAX_MANIFEST_BYTES = 256 << 10  # a pack.yaml is a few KiB
MANIFEST_NAME = "pack.yaml"  # as attuned.pack.manifest.MANIFEST_NAME (no import: no cycle)
# `:` `,` `-` `?` `[` `{`, wherever they are (quoted text too): every node but the first of a
# collection follows one, so a file holds at most about twice as many nodes. Real YAML has one
# every 20-40 bytes (a 115 KiB file: 5,700); a file at the cap reads in 0.1-0.25 s.
MAX_MARKS = 25_000
NOT_MARKS = bytes(sorted(set(range(256)) - set(b":,-?[{")))
MAX_DEPTH = 64  # levels of nested nodes (a scalar counts as one): Attune files use < 10
MAX_ALIASES = 100  # alias uses (`*name`, `<<: *name`) in one file
MAX_ALIAS_NODES = 10_000  # nodes that aliases repeat, counted as if expanded


class Refused(yaml.MarkedYAMLError):
    """A limit of this package, reported like a syntax error: with the line it concerns."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(problem=message, problem_mark=mark)
