"""The recursion-free JSON check agrees with the standard parser (NaN refused), at any depth."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.jsonsyntax import is_json


def reference(data: bytes) -> bool:
    def refuse(constant: str) -> None:
        raise ValueError(constant)

    try:
        json.loads(data, parse_constant=refuse)
    except ValueError:
        return False
    return True


CASES = [
    b"{}", b"[]", b'{"a":1}', b' [1, 2 , {"b": [true,false,null,"x\\u00e9"]}] ', b'{"a":}',
    b"[1,]", b"{,}", b"[", b"]", b'{"a" 1}', b"1 2", b'"x', b"NaN", b"-0.5e+3", b'{"a":1,}',
    b"[[[]]]", b"[{}]", b"", b"  ", b"01", b"[1.]", b'{"a":1 "b":2}', b"[]]", b"{}}",
    b'{"a":1}x', b"[1}", b'{"a":1]', b'"\\x"', b"[-]", b'{"a":{"b":[1,{"c":2}]},"d":[]}',
]  # fmt: skip


@pytest.mark.parametrize("data", CASES)
def test_agrees_with_the_standard_parser(data: bytes) -> None:
    assert is_json(data) == reference(data)


@given(st.text(alphabet='{}[]:,"a1 .-etrufnl\\', max_size=30))
def test_agrees_on_random_text(text: str) -> None:
    data = text.encode()
    assert is_json(data) == reference(data)


def test_depth_beyond_the_parsers_recursion() -> None:
    deep = b"[" * 20_000 + b"]" * 20_000
    assert is_json(deep)
    assert not is_json(deep[:-1])
    assert not is_json(b'{"m":' + deep + b',"x":NaN}')
    assert is_json(b'{"m":' + deep + b',"x":1}')
