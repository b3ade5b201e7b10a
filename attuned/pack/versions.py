"""Semantic versions and dependency constraints, delegated to `semantic_version`.

Accepted constraint spellings (pack.yaml `dependencies`): `>=1.2.0`, `>=1.0.0,<2`, `^1.2`,
`~1.2`, `==1.0.0`, `1.0.0` (exact), `*`, and npm-style space-separated ranges `>=1.2 <2`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import semantic_version

REF_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")


def parse_version(text: str) -> semantic_version.Version:
    """A strict semantic version; raises ValueError with a message fit for an author."""
    try:
        return semantic_version.Version(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a semantic version (expected e.g. 1.0.3)") from None


def is_version(text: str) -> bool:
    return bool(semantic_version.validate(text))


@dataclass(frozen=True)
class Constraint:
    """A version range as written by the author, with a matcher."""

    text: str

    def __post_init__(self) -> None:
        self._spec()  # fail early on a malformed range

    def _spec(self) -> semantic_version.SimpleSpec | semantic_version.NpmSpec:
        text = self.text.strip()
        if not text or text == "*":
            return semantic_version.SimpleSpec("*")
        if is_version(text):
            text = f"=={text}"
        try:
            if " " in text and "," not in text:
                return semantic_version.NpmSpec(text)
            return semantic_version.SimpleSpec(text)
        except ValueError:
            raise ValueError(f"{self.text!r} is not a version constraint") from None

    def allows(self, version: str) -> bool:
        return bool(self._spec().match(semantic_version.Version(version)))

    def __str__(self) -> str:
        return self.text or "*"
