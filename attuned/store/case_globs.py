"""Case globs as SQL: `attuned history --case` takes a shell-like glob, and it must match
case-sensitively on both databases without reading the cases into Python.

`*` is any text and `?` one character, nothing else is special; a `suite::name` glob
matches the suite and the name separately.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement
from sqlmodel import Session

from attuned.store.models import TEST_CASE

_CASE = TEST_CASE
_LIKE_ESCAPE = "!"


def like_pattern(glob: str) -> str:
    """A glob (`*` any text, `?` one character, nothing else special) as a LIKE pattern
    escaped with `!`: LIKE's own `%` and `_` in a case name stay literal."""
    out = []
    for char in glob:
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char in ("%", "_", _LIKE_ESCAPE):
            out.append(_LIKE_ESCAPE + char)
        else:
            out.append(char)
    return "".join(out)


def _matches(session: Session, column: Any, glob: str) -> ColumnElement[bool]:
    """`column` matches `glob`, case-sensitively on both databases. Without a wildcard, an
    equality (which the case index can seek); else LIKE, and on SQLite, whose LIKE ignores
    ASCII case, GLOB too (case-sensitive; only `[` needs escaping there)."""
    if "*" not in glob and "?" not in glob:
        return column == glob  # type: ignore[no-any-return]
    clause = column.like(like_pattern(glob), escape=_LIKE_ESCAPE)
    if session.connection().dialect.name == "sqlite":
        clause = clause & column.op("GLOB")(glob.replace("[", "[[]"))
    return clause  # type: ignore[no-any-return]


def case_match(session: Session, glob: str) -> ColumnElement[bool]:
    """`suite::name` globs match the suite and the name (split at the first `::`), any
    other glob the name alone."""
    c = _CASE.c
    suite, separator, name = glob.partition("::")
    if not separator:
        return _matches(session, c.name, glob)
    return _matches(session, c.suite, suite) & _matches(session, c.name, name)


def exact_case(glob: str) -> bool:
    """A `suite::name` without wildcards: one case, found through the case index."""
    return "::" in glob and "*" not in glob and "?" not in glob
