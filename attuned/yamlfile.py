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
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from attuned.errors import Problem, ValidationFailed

MAX_YAML_BYTES = 1 << 20  # a component file is rarely 100 KiB
MAX_MANIFEST_BYTES = 256 << 10  # a pack.yaml is a few KiB
MANIFEST_NAME = "pack.yaml"  # as attuned.pack.manifest.MANIFEST_NAME (no import: no cycle)
# `:` `,` `-` `?` `[` `{`, wherever they are (quoted text too): every node but the first of a
# collection follows one, so a file holds at most about twice as many nodes. Real YAML has one
# every 20-40 bytes (a 115 KiB file: 5,700); a file at the cap reads in 0.1-0.25 s.
MAX_MARKS = 25_000
_NOT_MARKS = bytes(sorted(set(range(256)) - set(b":,-?[{")))
MAX_DEPTH = 64  # levels of nested nodes (a scalar counts as one): Attune files use < 10
MAX_ALIASES = 100  # alias uses (`*name`, `<<: *name`) in one file
MAX_ALIAS_NODES = 10_000  # nodes that aliases repeat, counted as if expanded
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
# scalars whose constructor returns a value at once (not a generator filled in later)
_PLAIN_SCALARS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "timestamp")
)

try:  # the C parser is ~10x faster; fall back where libyaml is missing
    from yaml._yaml import CParser as _CParser

    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except (AttributeError, ImportError):  # pragma: no cover - depends on the PyYAML build
    _CParser = None  # type: ignore[assignment,misc]
    _Base = yaml.SafeLoader

ModelT = TypeVar("ModelT", bound=BaseModel)
Loc = tuple[str | int, ...]
# the bytes of each file read in a `keeping_reads()` block, by str(path)
_READS: ContextVar[dict[str, bytes] | None] = ContextVar("attuned_yaml_reads", default=None)


@contextmanager
def keeping_reads() -> Iterator[dict[str, bytes]]:
    """Keep the bytes of each file read (and so validated) within the block, the first read
    of each path: a pack's digest is then taken over exactly what was checked, and a file
    edited between the check and the digest cannot slip in unchecked."""
    reads: dict[str, bytes] = {}
    token = _READS.set(reads)
    try:
        yield reads
    finally:
        _READS.reset(token)


def kept(path: Path, data: bytes) -> None:
    """Note `data` as what `path` held when it was read, inside `keeping_reads()`."""
    reads = _READS.get()
    if reads is not None:
        reads.setdefault(str(path), data)


class _Refused(yaml.MarkedYAMLError):
    """A limit of this module, reported like a syntax error: with the line it concerns."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(problem=message, problem_mark=mark)


_PLAIN_TAGS: dict[str, str] = {}  # plain scalar text -> its resolved tag
_PLAIN_TAGS_KEPT = 4096


class _Slow(Exception):
    """The fast build met something it leaves to the generic constructor."""


class _Loader(_Base):  # type: ignore[valid-type,misc]
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
            _check_tree(node)
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
                _check_tree(node)
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
            raise _Refused(f"cannot read this {kind}: {exc}", node.start_mark) from None

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            _no_duplicate_keys(self, node)
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


def _no_duplicate_keys(loader: _Loader, node: yaml.MappingNode) -> None:
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
            raise _Refused(
                f"duplicate key {shown} (first on line {first[key]})", key_node.start_mark
            )
        first[key] = line


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_tree(root: yaml.Node) -> None:
    """The nesting cap, for a document without anchors (so without aliases)."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", node.start_mark)
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
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", node.start_mark)
            active.add(key)
            stack.append((node, depth, True))
            fresh = []
            for index, child in enumerate(kids):  # in document order, where anchors come first
                if id(child) in active:
                    raise _Refused("recursive alias (a node that contains itself)", node.start_mark)
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
            raise _Refused(f"more than {MAX_ALIASES} aliases", node.start_mark)
        if repeated > MAX_ALIAS_NODES:
            raise _Refused(
                f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)",
                node.start_mark,
            )
        if depth - 1 + height[key] > MAX_DEPTH:
            raise _Refused(
                f"nested more than {MAX_DEPTH} levels deep (through aliases)", node.start_mark
            )


def _read_text(path: Path) -> str:
    """The file's text, refusing before any parsing what is not a small, not too dense UTF-8
    regular file.

    Opened non-blocking and checked with fstat, so a FIFO named `x.yaml` cannot hang the
    daemon and a symlink swapped in between a check and the read changes nothing.
    """
    cap = _byte_cap(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ValidationFailed([Problem(path, "file not found")]) from None
    except OSError as exc:
        raise ValidationFailed([Problem(path, f"cannot read: {exc.strerror}")]) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValidationFailed(
                [Problem(path, "not a regular file (directory, FIFO or device)")]
            )
        if info.st_size > cap:
            raise ValidationFailed([_too_big(path, info.st_size)])
        chunks: list[bytes] = []
        got = 0
        while got <= cap and (chunk := os.read(fd, cap + 1 - got)):
            chunks.append(chunk)
            got += len(chunk)
    except OSError as exc:
        raise ValidationFailed([Problem(path, f"cannot read: {exc.strerror}")]) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    kept(path, data)
    if len(data) > cap:  # it grew after the fstat
        raise ValidationFailed([_too_big(path, len(data))])
    return _checked_text(path, data)


def _checked_text(path: Path, data: bytes) -> str:
    """`data` as text: not binary, UTF-8, and not so dense that composing it would be slow."""
    if b"\0" in data:
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise ValidationFailed([Problem(path, "binary content (a NUL byte), not YAML text", line)])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise ValidationFailed(
            [Problem(path, f"not UTF-8 text (byte 0x{bad}: {exc.reason})", line)]
        ) from None
    marks = len(data.translate(None, _NOT_MARKS))  # one pass in C: 1 MiB in under 1 ms
    if marks > MAX_MARKS:
        raise ValidationFailed(
            [
                Problem(
                    path,
                    f"too many keys and items: {marks} of `:` `,` `-` `?` `[` `{{`, "
                    f"more than the {MAX_MARKS} a YAML file may have",
                )
            ]
        )
    return text


def _byte_cap(path: Path) -> int:
    """A pack.yaml is a few KiB, so it gets a smaller cap than a component file."""
    return MAX_MANIFEST_BYTES if path.name == MANIFEST_NAME else MAX_YAML_BYTES


def _too_big(path: Path, size: int) -> Problem:
    kind = f"a {MANIFEST_NAME}" if path.name == MANIFEST_NAME else "a YAML file"
    return Problem(path, f"{size} bytes, more than the {_byte_cap(path)} {kind} may have")


def _parse_in_c(text: str) -> None:
    """Run libyaml's parser over the whole text, building no Python object (0.1 us an event,
    against 3 us a composed node): a syntax error or a bad character at the end of a big file
    is refused before any node is built. Its errors are the ones composing would raise."""
    if _CParser is not None:
        _CParser(text).raw_parse()


def _yaml_problem(path: Path, text: str, exc: yaml.YAMLError) -> Problem:
    line: int | None = None
    if isinstance(exc, yaml.MarkedYAMLError):
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        what = str(exc.problem or exc.context)
        message = what if isinstance(exc, _Refused) else f"invalid YAML: {what}"
    elif isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        if _CParser is not None:  # libyaml counts UTF-8 bytes, the Python reader characters
            line = text.encode().count(b"\n", 0, exc.position) + 1
        else:  # pragma: no cover - depends on the PyYAML build
            line = text.count("\n", 0, exc.position) + 1
        message = f"invalid YAML: character {chr(exc.character)!r}: {exc.reason}"
    else:
        message = f"invalid YAML: {exc}"
    return Problem(path, " ".join(message.split()), line=line)  # one problem, one log line


def read_yaml(path: Path) -> Any:
    """Parse one YAML file; a syntax error or a refused construct is a Problem with its line."""
    text = _read_text(path)
    try:
        _parse_in_c(text)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ValidationFailed([_yaml_problem(path, text, exc)]) from None
    except RecursionError:  # pragma: no cover - only the pure-Python parser recurses this deep
        raise ValidationFailed(
            [Problem(path, f"nested more than {MAX_DEPTH} levels deep")]
        ) from None


def _compose(path: Path) -> yaml.Node | None:
    """The checked node tree of `path` (line numbers), None when it cannot be had."""
    try:
        text = _read_text(path)
        _parse_in_c(text)
    except (ValidationFailed, yaml.YAMLError):
        return None
    loader = _Loader(text)
    try:
        return loader.get_single_node()  # type: ignore[no-any-return]
    except (yaml.YAMLError, RecursionError):
        return None
    finally:
        loader.dispose()


def line_map(path: Path) -> dict[Loc, int]:
    """Map each key path in the document to the 1-based line where its value starts."""
    root = _compose(path)
    lines: dict[Loc, int] = {}

    def walk(node: yaml.Node, loc: Loc) -> None:
        lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*loc, str(key.value))
                # point at the key: that is where an editor takes the reader
                lines[child] = key.start_mark.line + 1
                walk_children(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*loc, index))

    def walk_children(node: yaml.Node, loc: Loc) -> None:
        keep = lines[loc]
        walk(node, loc)
        lines[loc] = keep

    if root is not None:
        walk(root, ())
    return lines


def locate(lines: dict[Loc, int], loc: Sequence[str | int]) -> int | None:
    """The line of the deepest known prefix of `loc` (a missing key points at its parent)."""
    probe: Loc = tuple(loc)
    while probe:
        if probe in lines:
            return lines[probe]
        probe = probe[:-1]
    return lines.get(())


def field_name(loc: Sequence[str | int]) -> str:
    """Render a pydantic location the way a YAML author thinks of it: `runners.shell.type`."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif not part.isprintable():  # a key with a newline must not forge a log line
            parts.append(f"[{part!r}]")
        elif parts:
            parts.append(f".{part}")
        else:
            parts.append(str(part))
    return "".join(parts)


def _without_tags(lines: dict[Loc, int], loc: Loc) -> Loc:
    """Drop the tag a discriminated union puts in a location (`notify[0].webhook.url`):
    right after a list index, a part the file does not have where it has the one after."""
    kept: list[str | int] = []
    for index, part in enumerate(loc):
        following = loc[index + 1] if index + 1 < len(loc) else None
        if (
            isinstance(part, str)
            and kept
            and isinstance(kept[-1], int)
            and following is not None
            and (*kept, part) not in lines
            and (*kept, following) in lines
        ):
            continue
        kept.append(part)
    return tuple(kept)


def problems_from(exc: PydanticValidationError, path: Path, prefix: Loc = ()) -> list[Problem]:
    """Turn a pydantic error into Problems with lines looked up in `path`."""
    lines = line_map(path)
    problems = []
    for err in exc.errors(include_url=False):
        # drop pydantic's internal location parts (union tags, function validators)
        loc = tuple(
            p
            for p in err["loc"]
            if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))
        )
        full = _without_tags(lines, (*prefix, *loc))
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(
            Problem(path, message, line=locate(lines, full), field=field_name(full) or None)
        )
    return problems


def load_model(path: Path, model: type[ModelT], data: Any = None) -> ModelT:
    """Validate the YAML file (or already parsed `data` from it) as `model`."""
    if data is None:
        data = read_yaml(path)
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ValidationFailed([Problem(path, f"expected a mapping at the top, found {kind}", 1)])
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationFailed(problems_from(exc, path)) from None
