"""The nesting and alias checks of a composed node graph, before anything is constructed.

A "billion laughs" file is a few hundred bytes that expand to gigabytes in whatever
serialises the data later, so aliases get a budget; anchors and aliases stay allowed within
it, since `<<: *defaults` is common YAML.
"""

from __future__ import annotations

import yaml

from attuned.yamlfile.limits import MAX_ALIAS_NODES, MAX_ALIASES, MAX_DEPTH, Refused


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_tree(root: yaml.Node) -> None:
    """The nesting cap, for a document without anchors (so without aliases)."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Refused(f"nested more than {MAX_DEPTH} levels deep", node.start_mark)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, depth + 1) for item in node.value)


def check_graph(root: yaml.Node) -> None:
    """Refuse deep nesting, recursive aliases and alias bombs, in one pass over the nodes.

    An alias is the same node object reached again, so the composed graph is as small as the
    text; what aliases would cost once expanded is computed from memoised subtree sizes,
    without expanding anything.
    """
    size: dict[int, int] = {}  # expanded node count of each finished node
    height: dict[int, int] = {}  # expanded nesting below (and including) each finished node
    owner: dict[int, tuple[int, int]] = {}  # node -> (parent, index) that reached it first
    active: set[int] = set()  # the current path: reaching one of these again is a cycle
    aliases = repeated = 0
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    owner[id(root)] = (0, 0)
    while stack:
        node, depth, leaving = stack.pop()
        key = id(node)
        kids = _children(node)
        if not leaving:
            if depth > MAX_DEPTH:
                raise Refused(f"nested more than {MAX_DEPTH} levels deep", node.start_mark)
            active.add(key)
            stack.append((node, depth, True))
            fresh = []
            for index, child in enumerate(kids):  # in document order, where anchors come first
                if id(child) in active:
                    raise Refused("recursive alias (a node that contains itself)", node.start_mark)
                if id(child) not in owner:
                    owner[id(child)] = (key, index)
                    fresh.append(child)
            stack.extend((child, depth + 1, False) for child in reversed(fresh))
            continue
        active.discard(key)
        total, tallest = 1, 0
        for index, child in enumerate(kids):
            total += size[id(child)]
            tallest = max(tallest, height[id(child)])
            if owner[id(child)] != (key, index):  # reached before: an alias
                aliases += 1
                repeated += size[id(child)]
        size[key], height[key] = total, tallest + 1
        if aliases > MAX_ALIASES:
            raise Refused(f"more than {MAX_ALIASES} aliases", node.start_mark)
        if repeated > MAX_ALIAS_NODES:
            raise Refused(
                f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)",
                node.start_mark,
            )
        if depth - 1 + height[key] > MAX_DEPTH:
            raise Refused(
                f"nested more than {MAX_DEPTH} levels deep (through aliases)", node.start_mark
            )
