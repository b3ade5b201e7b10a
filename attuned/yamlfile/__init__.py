"""Load YAML into pydantic models with errors that name the file, line and field.

The fast C loader builds the data; the node tree that knows line numbers is composed (also in
C) only when there is an error to place.

Pack files come from anyone who can drop a folder or an archive, so reading one is bounded.
Before parsing: a size cap (smaller for a pack.yaml), and a cap on the characters that can
start a node, counted in the bytes (PyYAML builds a Python object of several microseconds per
node, so a dense 1 MiB file took seconds). Then libyaml parses the whole text in C, building
nothing, so a syntax error anywhere is refused before any node exists. While composing: a
nesting cap and a budget for aliases (a "billion laughs" file is a few hundred bytes that
expand to gigabytes in whatever serialises the data later).
Anchors and aliases stay allowed within that budget, since `<<: *defaults` is common YAML.
Duplicate keys, which PyYAML silently resolves to the last one, are an error.

The package's modules, in the order a file goes through them: `limits` (the caps), `text`
(the bytes, read within them), `loader` and `graph` (building nodes and data, checked),
`parse` (one file to data or nodes), `lines` (where a key path is written) and `models`
(pydantic validation with file, line and field).
"""

from attuned.yamlfile.limits import (
    MAX_ALIAS_NODES,
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_MANIFEST_BYTES,
    MAX_MARKS,
    MAX_YAML_BYTES,
)
from attuned.yamlfile.lines import line_map, locate
from attuned.yamlfile.models import load_model, problems_from
from attuned.yamlfile.parse import read_yaml
from attuned.yamlfile.text import keeping_reads, kept

__all__ = [
    "MAX_ALIASES",
    "MAX_ALIAS_NODES",
    "MAX_DEPTH",
    "MAX_MANIFEST_BYTES",
    "MAX_MARKS",
    "MAX_YAML_BYTES",
    "keeping_reads",
    "kept",
    "line_map",
    "load_model",
    "locate",
    "problems_from",
    "read_yaml",
]
