"""Ids as strings in answers (API.md, Revision 2): `Prefer: ids=string`.

A JavaScript number holds integers exactly only up to 2^53 and a Discord snowflake is above it,
so a request may ask for every `id`, `userId` and `achievementId` of its answer as a decimal
string. One mechanism serves every route, the fast path and the event stream alike: the answer's
Structs (those a handler has, or those decoded from the bytes that the writer encoded and may
have stored for a replay, always with integer ids) are copied into twin Structs of the same wire
fields, their ids as strings. `metadata` stays the `msgspec.Raw` it was, so stored JSON is never
looked into: a metadata key named "userId" keeps its number, digit for digit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache, lru_cache
from typing import Any

import msgspec
from litestar import Request
from msgspec import inspect

ID_NAMES = ("id", "userId", "achievementId")
STRING_FORM = "ids=string"
# On every answer that holds ids (a cache must key it by the Prefer header), and on those in
# the string form (RFC 7240 §3).
VARY = {"Vary": "Prefer"}
APPLIED = {**VARY, "Preference-Applied": STRING_FORM}

_encode = msgspec.json.Encoder().encode

# RFC 7240: Prefer = preference *( "," preference ); preference = token [ "=" word ]
# *( ";" parameter ), word = token / quoted-string, with optional whitespace around.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_ELEMENT = re.compile(rf"(?:{_QUOTED}|[^,\"])+")  # a comma inside quotes does not split
_PREFERENCE = re.compile(rf"\s*({_TOKEN})\s*(?:=\s*({_TOKEN}|{_QUOTED}))?\s*(?:;.*)?", re.DOTALL)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def prefers_string_ids(values: Iterable[str]) -> bool:
    """Whether the Prefer header values ask for `ids=string` (names and values compared without
    case; other preferences ignored; the first `ids` preference counts, RFC 7240 §2)."""
    for value in values:
        verdict = _ids_preference(value)
        if verdict is not None:
            return verdict
    return False


@lru_cache(maxsize=64)  # a client sends the same header every time: parse it once
def _ids_preference(value: str) -> bool | None:
    """Whether the first `ids` preference of one header value is `string`; None without one."""
    for element in _ELEMENT.findall(value):
        preference = _PREFERENCE.fullmatch(element)
        if preference is None or preference[1].lower() != "ids":
            continue
        word = preference[2] or ""
        if word.startswith('"'):
            word = _ESCAPE.sub(r"\1", word[1:-1])
        return word.lower() == "string"
    return None


def headers(strings: bool) -> dict[str, str]:
    """The headers of an answer that holds ids, in the form asked for."""
    return APPLIED if strings else VARY


def id_form(request: Request[Any, Any, Any], kind: Any) -> tuple[bool, dict[str, str] | None]:
    """Whether an answer of type `kind` to this request gives its ids as strings, and the
    headers to send with it (none when such answers hold no ids)."""
    if not carries_ids(kind):
        return False, None
    strings = prefers_string_ids(request.headers.getall("prefer", ()))
    return strings, headers(strings)


@cache
def carries_ids(kind: Any) -> bool:
    """Whether answers of this type hold ids (and so vary with the Prefer header)."""
    return _holds_ids(inspect.type_info(kind))


def _holds_ids(info: inspect.Type) -> bool:
    match info:
        case inspect.StructType():
            return any(f.encode_name in ID_NAMES or _holds_ids(f.type) for f in info.fields)
        case inspect.ListType():
            return _holds_ids(info.item_type)
        case inspect.UnionType():
            return any(_holds_ids(member) for member in info.types)
        case _:
            return False


@cache
def _twin(kind: type[msgspec.Struct]) -> tuple[type[msgspec.Struct], list[int], list[int]]:
    """A Struct type with the same wire fields as `kind` (any values), the positions of its ids,
    and those of its members that hold ids further in (a batch's results)."""
    fields = msgspec.structs.fields(kind)
    names = {field.name: field.encode_name for field in fields}
    twin = msgspec.defstruct(
        f"{kind.__name__}WithStringIds", [(f.name, object) for f in fields], rename=names
    )
    ids = [index for index, field in enumerate(fields) if field.encode_name in ID_NAMES]
    info = inspect.type_info(kind)
    assert isinstance(info, inspect.StructType)
    inner = [
        index
        for index, field in enumerate(info.fields)
        if index not in ids and _holds_ids(field.type)
    ]
    return twin, ids, inner


def _with_string_ids(value: Any) -> Any:
    if isinstance(value, list):
        return [_with_string_ids(item) for item in value]
    if not isinstance(value, msgspec.Struct):
        return value
    twin, ids, inner = _twin(type(value))
    members = list(msgspec.structs.astuple(value))
    for index in ids:
        members[index] = str(members[index])
    for index in inner:
        members[index] = _with_string_ids(members[index])
    return twin(*members)


def encode(value: Any, strings: bool) -> bytes:
    """An answer's JSON: as it is, or with its ids as strings."""
    return _encode(_with_string_ids(value) if strings else value)


@cache
def _decoder(kind: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(kind)


def restring(kind: Any, body: bytes) -> bytes:
    """An encoded answer of type `kind` (integer ids) with its ids as strings."""
    return encode(_decoder(kind).decode(body), strings=True)
