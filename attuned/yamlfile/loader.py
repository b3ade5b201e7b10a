"""The safe YAML loader with this package's checks, and a fast build of plain documents.

The fast C loader builds the data; duplicate keys, which PyYAML silently resolves to the last
one, are an error; a scalar Python refuses is an error with its line.
"""

from __future__ import annotations

from typing import Any

import yaml

from attuned.yamlfile.graph import check_graph, check_tree
from attuned.yamlfile.limits import MAX_DEPTH, Refused

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
# scalars whose constructor returns a value at once (not a generator filled in later)
_PLAIN_SCALARS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "timestamp")
)

try:  # the C parser is ~10x faster; fall back where libyaml is missing
    from yaml._yaml import CParser as CParser  # `as`: exported, `parse` runs it alone

    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except (AttributeError, ImportError):  # pragma: no cover - depends on the PyYAML build
    CParser = None  # type: ignore[assignment,misc]
    _Base = yaml.SafeLoader

_PLAIN_TAGS: dict[str, str] = {}  # plain scalar text -> its resolved tag
_PLAIN_TAGS_KEPT = 4096


class _Slow(Exception):
    """The fast build met something it leaves to the generic constructor."""


class Loader(_Base):  # type: ignore[valid-type,misc]
    """The safe loader, plus the checks above; the node graph is checked before construction."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        # no anchor, no alias: the node graph is a tree and a cheaper walk will do
        self.may_alias = "&" in stream

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        """The tag of a plain scalar depends on its text alone (no path resolvers here), and
        pack files repeat theirs (`type`, `string`, `shell`...): remembered, not matched
        against the resolvers' regexes again."""
        if kind is not yaml.ScalarNode or not implicit[0]:
            return super().resolve(kind, value, implicit)
        tag = _PLAIN_TAGS.get(value)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(_PLAIN_TAGS) < _PLAIN_TAGS_KEPT and len(value) <= 64:
                _PLAIN_TAGS[value] = tag
        return tag

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None and self.may_alias:
            check_graph(node)
        elif node is not None:
            check_tree(node)
        return node

    def get_single_data(self) -> Any:
        if not self.may_alias:
            node = super().get_single_node()  # composed in C, checked while it is built
            if node is None:
                return None
            try:
                return self._build(node, 1)
            except (_Slow, yaml.YAMLError):
                # from scratch: a limit, then the generic constructor's own error, if any
                self.constructed_objects.clear()
                self.recursive_objects.clear()
                self.state_generators.clear()
                self.deep_construct = False
                check_tree(node)
                return self.construct_document(node)
        node = self.get_single_node()
        return None if node is None else self.construct_document(node)

    def _build(self, node: yaml.Node, depth: int) -> Any:
        """The data of a tree of plain maps, lists and scalars, built in one recursion (the
        generic constructor costs a generator and a memo per node: 3x). Anything else (a
        merge key, another tag, a duplicate key, a limit) is left to the generic path, so
        every error reads as it always did."""
        if depth > MAX_DEPTH:
            raise _Slow
        tag = node.tag
        if isinstance(node, yaml.ScalarNode):
            if tag == _STR_TAG:
                return node.value
            if tag not in _PLAIN_SCALARS:
                raise _Slow
            return self.construct_object(node)
        if isinstance(node, yaml.MappingNode) and tag == _MAP_TAG:
            data: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                    raise _Slow
                key = self._build(key_node, depth + 1)
                try:
                    if key in data:
                        raise _Slow
                except TypeError:  # unhashable
                    raise _Slow from None
                data[key] = self._build(value_node, depth + 1)
            return data
        if isinstance(node, yaml.SequenceNode) and tag == _SEQ_TAG:
            return [self._build(item, depth + 1) for item in node.value]
        raise _Slow

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # a scalar the resolver typed but Python refuses (2001-13-45, !!int abc) would
        # otherwise escape as a bare ValueError with no line
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError, AttributeError, LookupError) as exc:
            kind = str(node.tag).rpartition(":")[2] or "value"
            raise Refused(f"cannot read this {kind}: {exc}", node.start_mark) from None

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            _no_duplicate_keys(self, node)
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


def _no_duplicate_keys(loader: Loader, node: yaml.MappingNode) -> None:
    """Keys written twice in one mapping (merged-in keys may be overridden: that is the point)."""
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            continue
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            continue  # `!!set` as a key: PyYAML reports the unhashable key itself
        if key in first:
            shown = repr(key) if len(repr(key)) <= 80 else repr(key)[:77] + "..."
            raise Refused(
                f"duplicate key {shown} (first on line {first[key]})", key_node.start_mark
            )
        first[key] = line
