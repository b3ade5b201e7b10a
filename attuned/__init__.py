"""attuned: a GitOps-style reconciling daemon for Attune automation packs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("attuned")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"
