"""read_yaml builds plain documents in one recursion and leaves everything else to PyYAML's
generic constructor: whatever it returns is what PyYAML's safe loader (the same C parser, the
generic constructor) returns."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attuned.errors import ValidationFailed
from attuned.yamlfile import read_yaml

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.dates()
    | st.datetimes()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=4)
    ),
    max_leaves=20,
)
soup = st.lists(
    st.sampled_from(
        [
            *string.ascii_letters[:6],
            *(":", " ", "\n", "- ", "[", "]", "{", "}", ",", "'", '"', "~", "0x1f", "1e3"),
            *("!!str ", "!!int ", "!!set ", "!!omap ", "!!binary ", "<<: ", "2001-12-14"),
            *("yes", "No", ".inf", "&a ", "*a", "? ", "#", "|\n  ", "\t"),
        ]
    ),
    max_size=30,
).map("".join)


def read(text: str) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.yaml"
        path.write_text(text)
        return read_yaml(path)


def same_as_pyyaml(text: str) -> None:
    """read_yaml refuses more (duplicate keys, limits) but never reads anything else."""
    try:
        ours = read(text)
    except ValidationFailed:
        return
    assert repr(ours) == repr(yaml.load(text, Loader=yaml.CSafeLoader))


@PROPERTY
@given(values)
def test_generated_documents_read_as_pyyaml_reads_them(data: Any) -> None:
    same_as_pyyaml(yaml.safe_dump(data))
    same_as_pyyaml(yaml.safe_dump(data, default_flow_style=True))


@PROPERTY
@given(soup)
def test_token_soup_reads_as_pyyaml_reads_it(text: str) -> None:
    same_as_pyyaml(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\nb: [x, 2.5, ~, true, 2001-12-14]\n",
        "base: &b {x: 1}\nuse: {<<: *b, y: 2}\n",  # an anchor: the generic constructor
        "m: {<<: {x: 1}, x: 2}\n",  # a merge key without an anchor
        "s: !!set {a, b}\no: !!omap [{a: 1}]\nbin: !!binary aGk=\n",
        "1: int key\n'1': str key\n",
        "x: !!str 12\ny: !!float 1\n",
    ],
)
def test_tags_merges_and_odd_keys(text: str) -> None:
    same_as_pyyaml(text)
    read(text)  # none of these is refused


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: {c: 1, c: 2}\n", "x.yaml:2: duplicate key 'c' (first on line 2)"),
        ("a: !!int x\n", "x.yaml:1: cannot read this int"),
        ("a: {[1]: 2}\n", "x.yaml:1: invalid YAML: found unhashable key"),
        ("1: a\ntrue: b\n", "x.yaml:2: duplicate key True (first on line 1)"),
    ],
)
def test_errors_are_the_generic_constructors(text: str, expected: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        read(text)
    assert expected in str(caught.value.problems[0])
