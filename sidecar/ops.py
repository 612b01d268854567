"""The progress ops language, pure: ops on a metadata object and the `unlockWhen` conditions.

Numbers are Python ints or Decimals; booleans are never numbers. `inc` adds in decimal128
(34 significant digits, half-even: 0.1 + 0.2 is 0.3), `max`/`min` and the conditions compare
exactly. Every number an op or condition meets must be in the accepted range (API.md, Revision 2),
which also bounds the work: no sum needs more than 34 digits. Errors are ApiErrors naming the
offending op (`ops.2.path`).
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sidecar.errors import ApiError, field_error, validation_error
from sidecar.models import ABSENT, Condition, ProgressOp
from sidecar.validation import MAX_DEPTH, in_range, parse_value

NUMERIC_OPS = frozenset({"inc", "max", "min"})
COMPARATORS = ("gte", "gt", "lte", "lt", "eq")
OUT_OF_RANGE = "NUMBER_OUT_OF_RANGE"

# IEEE 754 decimal128. Emax and Emin trap a sum beyond the accepted range (above 9.99e308, or
# nonzero below 1e-400); in_range() then takes what lies between the largest double and 1e309.
DECIMAL128 = decimal.Context(
    prec=34,
    rounding=decimal.ROUND_HALF_EVEN,
    Emax=308,
    Emin=-400,
    traps=[decimal.Overflow, decimal.Subnormal, decimal.InvalidOperation],
)
# Integer sums below 10**34 fit in 34 digits: exact as Python ints, without a decimal.
_EXACT_INT = 10**34


@dataclass(frozen=True, slots=True)
class ParsedOp:
    op: str
    keys: tuple[str, ...]
    value: Any
    field: str


@dataclass(frozen=True, slots=True)
class ParsedCondition:
    keys: tuple[str, ...]
    comparator: str
    value: Any


def is_number(value: Any) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def split_path(path: str, field: str) -> tuple[str, ...]:
    # No deeper than metadata may be: a path 1,000 objects deep was a RecursionError on the way out.
    if path.count(".") >= MAX_DEPTH:
        raise ApiError(422, "INVALID_PATH", f"{field}: more than {MAX_DEPTH} segments")
    keys = tuple(path.split("."))
    if not path or "" in keys:
        raise ApiError(422, "INVALID_PATH", f"{field}: {path!r} has an empty segment", None)
    return keys


def parse_ops(ops: Sequence[ProgressOp], prefix: str = "") -> list[ParsedOp]:
    parsed = []
    for index, op in enumerate(ops):
        field = f"{prefix}ops.{index}"
        keys = split_path(op.path, f"{field}.path")
        value: Any = None
        if op.op != "remove":
            if op.value is ABSENT or len(op.value) == 0:
                raise validation_error(f"{field}.value", "is required")
            value = parse_value(bytes(op.value), f"{field}.value", OUT_OF_RANGE)
            if op.op in NUMERIC_OPS and not is_number(value):
                raise validation_error(f"{field}.value", f"{op.op} needs a number")
        parsed.append(ParsedOp(op.op, keys, value, field))
    return parsed


def parse_conditions(
    conditions: Sequence[Condition] | None, prefix: str = ""
) -> list[ParsedCondition]:
    parsed = []
    for index, condition in enumerate(conditions or ()):
        field = f"{prefix}unlockWhen.{index}"
        given = [name for name in COMPARATORS if len(getattr(condition, name)) > 0]
        if len(given) != 1:
            raise validation_error(field, "needs exactly one of gte, gt, lte, lt, eq")
        comparator = given[0]
        raw = bytes(getattr(condition, comparator))
        value = parse_value(raw, f"{field}.{comparator}", OUT_OF_RANGE)
        if comparator != "eq" and not is_number(value):
            raise validation_error(f"{field}.{comparator}", "needs a number")
        parsed.append(
            ParsedCondition(split_path(condition.path, f"{field}.path"), comparator, value)
        )
    return parsed


def _parent(metadata: dict[str, Any], op: ParsedOp, create: bool) -> dict[str, Any] | None:
    """The object holding the op's last key; None when missing and not to be created."""
    current = metadata
    for depth, key in enumerate(op.keys[:-1]):
        child = current.get(key)
        if child is None and key not in current:
            if not create:
                return None
            child = current[key] = {}
        if not isinstance(child, dict):
            where = ".".join(op.keys[: depth + 1])
            raise ApiError(422, "INVALID_PATH", f"{op.field}.path: {where} is not an object")
        current = child
    return current


def _sum(stored: Any, value: Any, op: ParsedOp) -> Any:
    """stored + value in decimal128 (stored None: a missing field, which counts as 0); an int
    when both are ints."""
    ints = isinstance(value, int) and isinstance(stored, int | None)
    if ints:
        total = value + (stored or 0)
        if -_EXACT_INT < total < _EXACT_INT:
            return total
    try:
        # plus() rounds to 34 digits and keeps the value's exponent: 1E+2 stays 1E+2.
        result = DECIMAL128.plus(value) if stored is None else DECIMAL128.add(stored, value)
        if in_range(result):
            return int(result) if ints else result
    except decimal.DecimalException:  # trapped: beyond the range
        pass
    raise field_error(OUT_OF_RANGE, op.field, "the result is out of range")


def apply_ops(metadata: dict[str, Any], ops: Sequence[ParsedOp]) -> None:
    """Apply the ops in order, in place. Raises on the first failing op (the caller discards)."""
    for op in ops:
        parent = _parent(metadata, op, create=op.op != "remove")
        key = op.keys[-1]
        if parent is None:
            continue
        if op.op == "set":
            parent[key] = op.value
        elif op.op == "remove":
            parent.pop(key, None)
        else:
            parent[key] = _numeric(parent, key, op)


def _numeric(parent: dict[str, Any], key: str, op: ParsedOp) -> Any:
    if key not in parent:
        return op.value if op.op != "inc" else _sum(None, op.value, op)
    stored = parent[key]
    where = ".".join(op.keys)
    if not is_number(stored):
        raise ApiError(
            422, "NOT_A_NUMBER", f"{op.field}: the stored value at {where} is not a number"
        )
    if not in_range(stored):  # stored before the bound: `set` replaces it
        raise field_error(
            OUT_OF_RANGE, f"{op.field}.path", f"the stored value at {where} is out of range"
        )
    if op.op == "inc":
        return _sum(stored, op.value, op)
    if op.op == "max":
        return op.value if op.value > stored else stored
    return op.value if op.value < stored else stored


def _lookup(metadata: dict[str, Any], keys: tuple[str, ...]) -> tuple[bool, Any]:
    current: Any = metadata
    for key in keys:
        if not isinstance(current, dict) or key not in current:
            return False, None
        current = current[key]
    return True, current


def json_equal(left: Any, right: Any) -> bool:
    """JSON equality: numbers by value, objects regardless of key order, 1 never equals true."""
    if is_number(left) and is_number(right):
        return bool(left == right)
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    return bool(left == right)


def conditions_hold(metadata: dict[str, Any], conditions: Sequence[ParsedCondition]) -> bool:
    """All conditions hold (and there is at least one); a missing path holds for nothing."""
    if not conditions:
        return False
    for condition in conditions:
        found, stored = _lookup(metadata, condition.keys)
        if not found or not _compare(stored, condition):
            return False
    return True


def _compare(stored: Any, condition: ParsedCondition) -> bool:
    wanted = condition.value
    if condition.comparator == "eq":
        return json_equal(stored, wanted)
    if not is_number(stored):
        return False
    if condition.comparator == "gte":
        return bool(stored >= wanted)
    if condition.comparator == "gt":
        return bool(stored > wanted)
    if condition.comparator == "lte":
        return bool(stored <= wanted)
    return bool(stored < wanted)
