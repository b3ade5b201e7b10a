"""Hand memory a large pass freed back to the system, so an idle daemon's RSS is what it keeps.

A first sync of 1,000 packs allocates far more than the daemon keeps; what it frees stays in
the process: in glibc's heap, free but resident, and in SQLite's page cache (up to 2 MiB per
pooled connection, refilled by the next pass anyway). After a full pass, the daemon calls
`release`: a collection of cycles, the SQLite pool closed (the next pass opens it again, a
millisecond), and glibc asked to return its free pages (`malloc_trim`, glibc only).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from attuned.registry import Registry


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    return trim


def release(registry: Registry | None) -> bool:
    """Return freed memory to the system; False where the C library cannot (only the
    collection and the pool's caches are released then)."""
    gc.collect()
    if registry is not None and registry.db.is_sqlite:
        registry.db.dispose()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
