"""Strict input: request bodies, metadata JSON, ids in paths and queries, Idempotency-Key.

Every failure becomes an ApiError: 400 MALFORMED_JSON for what is not JSON at all,
415 for a body that is not application/json, 422 VALIDATION_FAILED with the dotted field path
for JSON that breaks the schema.
"""

from __future__ import annotations

import decimal
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from sidecar.errors import ApiError, field_error, validation_error
from sidecar.jsonsyntax import is_json
from sidecar.models import ABSENT, MAX_ID

T = TypeVar("T")

MAX_METADATA_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_IDEMPOTENCY_KEY = 255
# The accepted numbers (API.md, Types): 0, or a magnitude from 1e-400 to the largest double.
FLOAT_MAX = Decimal("1.7976931348623157e308")
FLOAT_MIN = Decimal("1e-400")
_INT_MAX = int(FLOAT_MAX)
_INT_DIGITS = len(str(_INT_MAX))  # 309: an integer with more digits is out of range

_LOCATION = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `(?P<name>[^`]+)`")
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_DIGITS = re.compile(r"[0-9]{1,19}")
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")


def _dotted(path: str) -> list[str]:
    return [name or index for name, index in _PATH_PART.findall(path)]


def field_of(error: msgspec.ValidationError, prefix: str = "") -> tuple[str, str]:
    """msgspec's "Expected `int` - at `$.ops[2].value`" → ("ops.2.value", "Expected `int`")."""
    message = str(error)
    location = _LOCATION.search(message)
    parts = [prefix] if prefix else []
    if location:
        parts += _dotted(location.group("path"))
        message = message[: location.start()]
    named = _NAMED_FIELD.search(message)
    if named:
        parts.append(named.group("name"))
    return ".".join(parts), message


def _is_json(body: bytes) -> bool:
    """Only on the error path: is the whole body JSON (so the failure is the schema's)?"""
    try:
        # NaN and Infinity are not JSON; integers stay text (int() refuses 4,300+ digits, JSON not).
        json.loads(body, parse_constant=_no_constants, parse_int=str)
    except RecursionError:  # nested deeper than the C parser follows: check it without recursion
        return is_json(body)
    except ValueError:
        return False
    return True


def decode(decoder: msgspec.json.Decoder[T], body: bytes, prefix: str = "") -> T:
    """Decode a JSON document strictly into its Struct; 400 if it is not JSON, else 422."""
    try:
        # msgspec does not look inside the values it keeps raw (metadata): check all of it here.
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(400, "MALFORMED_JSON", f"the body is not UTF-8: {error}") from None
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as error:
        if not _is_json(body):
            raise ApiError(400, "MALFORMED_JSON", "the body is not valid JSON") from None
        field, message = field_of(error, prefix)
        raise validation_error(field or prefix or "body", message) from None
    except RecursionError:
        if not _is_json(body):
            raise ApiError(400, "MALFORMED_JSON", "the body is not valid JSON") from None
        raise validation_error(prefix or "body", "nested too deeply") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, "MALFORMED_JSON", f"the body is not valid JSON: {error}") from None


# --- JSON values: metadata and op values -------------------------------------------------

# Compact UTF-8 JSON (no \u escapes for what UTF-8 can say); exact numbers written as decimals.
canonical_json = msgspec.json.Encoder(decimal_format="number").encode


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate key {duplicate!r}")
    return result


def in_range(number: int | Decimal) -> bool:
    """0, or a magnitude from 1e-400 to the largest double. Cheap at any exponent: comparing
    decimals compares their exponents first (it is adding them that can cost a digit per unit)."""
    if isinstance(number, int):
        return -_INT_MAX <= number <= _INT_MAX
    magnitude = number.copy_abs()  # abs() would round to the context's precision
    return number.is_zero() or FLOAT_MIN <= magnitude <= FLOAT_MAX


class OutOfRange(ValueError):
    """A number beyond the accepted range, found while parsing a JSON value."""

    def __init__(self, text: str) -> None:
        shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"
        super().__init__(f"number {shown} is out of range (0, or 1e-400 to 1.8e308 in magnitude)")


def _bounded_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)  # exact, and cheap whatever the exponent
    except decimal.InvalidOperation:  # an exponent beyond what any decimal holds
        raise OutOfRange(text) from None
    if not in_range(value):
        raise OutOfRange(text)
    return value


def _bounded_int(text: str) -> int:
    # Counted before int(), whose cost grows with the square of the digits.
    if len(text) - text.startswith("-") > _INT_DIGITS or not in_range(value := int(text)):
        raise OutOfRange(text)
    return value


def _no_constants(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


# Built once: json.loads with hooks builds a new decoder on every call (half its cost here).
_value_decoder = json.JSONDecoder(
    parse_float=_bounded_decimal,
    parse_int=_bounded_int,
    parse_constant=_no_constants,
    object_pairs_hook=_object_without_duplicates,
)

# A JSON integer of at most 18 digits: well inside the range of a double and of SQLite's ints.
_PLAIN_INT = re.compile(rb"-?(?:0|[1-9][0-9]{0,17})")


def parse_value(raw: bytes | str, field: str, range_code: str = "VALIDATION_FAILED") -> Any:
    """A JSON value as Python: ints exact, other numbers as exact Decimals, objects as dicts.

    Refuses duplicate keys, numbers out of range (422 `range_code`), and nesting deeper than
    allowed.
    """
    if isinstance(raw, bytes) and _PLAIN_INT.fullmatch(raw):
        return int(raw)  # the usual op value (`1`): nothing to check beyond the JSON syntax
    try:
        value = _value_decoder.decode(raw if isinstance(raw, str) else raw.decode("utf-8"))
    except RecursionError:
        raise validation_error(field, f"nested deeper than {MAX_DEPTH} levels") from None
    except OutOfRange as error:
        raise field_error(range_code, field, str(error)) from None
    except ValueError as error:
        raise validation_error(field, str(error)) from None
    if depth_of(value) > MAX_DEPTH:
        raise validation_error(field, f"nested deeper than {MAX_DEPTH} levels")
    try:
        canonical_json(value)
    except UnicodeEncodeError:  # "\ud800" is valid JSON syntax, but no text can hold it
        raise validation_error(field, "holds a lone UTF-16 surrogate escape") from None
    return value


def depth_of(value: Any) -> int:
    """Nesting depth: a scalar is 0, an object or array is one more than its deepest member."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, level = stack.pop()
        if isinstance(current, dict):
            members: Any = current.values()
        elif isinstance(current, list):
            members = current
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((member, level + 1) for member in members)
    return deepest


def metadata_text(raw: msgspec.Raw, field: str = "metadata") -> str:
    """Validated metadata, as the JSON text to store: compact and UTF-8, so that the size limit
    counts characters rather than how a client chose to escape them; numbers keep their digits."""
    if raw is ABSENT or len(raw) == 0:
        return "{}"
    value = parse_value(bytes(raw), field)
    if not isinstance(value, dict):
        raise validation_error(field, "must be a JSON object")
    text = canonical_json(value)
    check_metadata_size(len(text), field)
    return text.decode("utf-8")


def check_metadata_size(size: int, field: str = "metadata") -> None:
    if size > MAX_METADATA_BYTES:
        raise validation_error(field, f"is {size} bytes of JSON; the limit is {MAX_METADATA_BYTES}")


# --- path, query and header parameters ---------------------------------------------------


def ascii_digits(text: str) -> int | None:
    """The value of 1 to 19 ASCII digits, for every number in a header or parameter; None for
    anything else. (str.isdigit() also takes "²", which int() refuses, and any number of digits.)"""
    return int(text) if _DIGITS.fullmatch(text) else None


def parse_id(text: str | None, field: str) -> int:
    if text is None:
        raise validation_error(field, "is required")
    value = ascii_digits(text)
    if value is None or not 1 <= value <= MAX_ID:
        raise validation_error(field, f"must be a decimal integer from 1 to {MAX_ID}")
    return value


def parse_bounded_int(
    query: Mapping[str, str], field: str, default: int, low: int, high: int | None
) -> int:
    text = query.get(field)
    if text is None:
        return default
    value = ascii_digits(text)
    if value is None or value < low or (high is not None and value > high):
        top = "" if high is None else f" to {high}"
        raise validation_error(field, f"must be an integer from {low}{top}")
    return value


def parse_bool(query: Mapping[str, str], field: str) -> bool:
    text = query.get(field, "false")
    if text not in ("true", "false"):
        raise validation_error(field, "must be true or false")
    return text == "true"


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise validation_error(
            "Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )
    return key
