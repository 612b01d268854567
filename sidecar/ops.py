"""The progress ops language, pure: ops on a metadata object and the `unlockWhen` conditions.

Numbers are Python ints (exact at any size) or Decimals (exact: 0.1 + 0.2 is 0.3); booleans
are never numbers. Errors are ApiErrors naming the offending op (`ops.2.path`).
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sidecar.errors import ApiError, validation_error
from sidecar.models import ABSENT, Condition, ProgressOp
from sidecar.validation import FLOAT_MAX, parse_value

NUMERIC_OPS = frozenset({"inc", "max", "min"})
COMPARATORS = ("gte", "gt", "lte", "lt", "eq")


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
            value = parse_value(bytes(op.value), f"{field}.value")
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
        value = parse_value(bytes(getattr(condition, comparator)), f"{field}.{comparator}")
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


def _finite(value: Any, op: ParsedOp) -> Any:
    if isinstance(value, Decimal) and abs(value) > FLOAT_MAX:
        raise validation_error(f"{op.field}.value", "the result is out of range")
    return value


# Sums as exact as the numbers given: a finite sum of finite decimals needs only finite digits,
# so an unbounded precision never rounds (inputs are bounded by the range of a double).
EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def apply_ops(metadata: dict[str, Any], ops: Sequence[ParsedOp]) -> None:
    """Apply the ops in order, in place. Raises on the first failing op (the caller discards)."""
    with decimal.localcontext(EXACT):
        _apply_each(metadata, ops)


def _apply_each(metadata: dict[str, Any], ops: Sequence[ParsedOp]) -> None:
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
        return op.value if op.op != "inc" else _finite(op.value, op)
    stored = parent[key]
    if not is_number(stored):
        raise ApiError(
            422,
            "NOT_A_NUMBER",
            f"{op.field}: the stored value at {'.'.join(op.keys)} is not a number",
        )
    if op.op == "inc":
        return _finite(stored + op.value, op)
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
