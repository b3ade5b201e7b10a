"""A YAML file's text, read so that a hostile file is refused before any parsing.

Before parsing: a size cap (smaller for a pack.yaml), and a cap on the characters that can
start a node, counted in the bytes (PyYAML builds a Python object of several microseconds per
node, so a dense 1 MiB file took seconds). The bytes read are kept on request, so a pack's
digest covers exactly what was checked.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from attuned.errors import Problem, ValidationFailed
from attuned.yamlfile.limits import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    MAX_MARKS,
    MAX_YAML_BYTES,
    NOT_MARKS,
)

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


def read_text(path: Path) -> str:
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
    marks = len(data.translate(None, NOT_MARKS))  # one pass in C: 1 MiB in under 1 ms
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
