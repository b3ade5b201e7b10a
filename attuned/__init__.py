"""attuned: a GitOps-style reconciling daemon for Attune automation packs."""

from typing import Any


def __getattr__(name: str) -> Any:
    """`__version__` on first use: importlib.metadata costs every command 25 ms."""
    if name != "__version__":
        raise AttributeError(f"module 'attuned' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("attuned")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        found = "0+unknown"
    globals()["__version__"] = found
    return found
