"""Model-based test of apply: random request sequences through HTTP agree, after every request,
with a small pure-Python model of API.md's ops and conditions (unlock moment included)."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import PROGRESS, TIMESTAMP, assert_problem, create_definition

APPLY = f"{PROGRESS}/apply"
PATHS = ["a", "b", "b.c", "b.d", "a.x", "b.c.e"]

# --- strategies ----------------------------------------------------------------------------

numbers = st.integers(min_value=-3, max_value=3)
scalars = st.one_of(numbers, st.booleans(), st.none(), st.sampled_from(["", "x", "1", "true"]))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.dictionaries(st.sampled_from(["c", "d", "e", "x"]), inner, max_size=3),
        st.lists(inner, max_size=2),
    ),
    max_leaves=5,
)
paths = st.sampled_from(PATHS)
numeric_paths = st.sampled_from(["a", "a", "b.c", "b.d", "a.x"])
numeric_ops = st.builds(
    lambda name, path, value: {"op": name, "path": path, "value": value},
    st.sampled_from(["inc", "inc", "max", "min"]),
    numeric_paths,
    numbers,
)
set_ops = st.builds(lambda path, value: {"op": "set", "path": path, "value": value}, paths, values)
remove_ops = st.builds(lambda path: {"op": "remove", "path": path}, paths)
request_ops = st.lists(
    st.one_of(numeric_ops, numeric_ops, numeric_ops, set_ops, remove_ops), max_size=5
)
ordering = st.builds(
    lambda comparator, path, value: {"path": path, comparator: value},
    st.sampled_from(["gte", "gt", "lte", "lt"]),
    numeric_paths,
    st.integers(min_value=-2, max_value=2),
)
# eq also with floats that equal an integer (10 equals 10.0) and with any value.
equality = st.builds(
    lambda path, value: {"path": path, "eq": value},
    paths,
    st.one_of(st.none(), values, numbers.map(float)),
)
random_conditions = st.one_of(ordering, ordering, equality)


def leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every (dotted path, value) reachable through objects."""
    found = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        found.append((path, value))
        if isinstance(value, dict):
            found.extend(leaves(value, f"{path}."))
    return found


def reordered(value: Any) -> Any:
    """The same JSON value with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(value)}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


def near(path: str, value: Any) -> st.SearchStrategy[dict[str, Any]]:
    """A condition on a value the metadata holds: likely, not certain, to hold."""
    if isinstance(value, int) and not isinstance(value, bool):
        return st.one_of(
            st.builds(
                lambda comparator, delta: {"path": path, comparator: value + delta},
                st.sampled_from(["gte", "gt", "lte", "lt", "eq"]),
                st.integers(min_value=-1, max_value=1),
            ),
            st.just({"path": path, "eq": float(value)}),
            st.just({"path": path, "eq": bool(value)}),  # never equal: 1 is not true
        )
    return st.one_of(
        st.just({"path": path, "eq": reordered(value)}),
        st.builds(lambda other: {"path": path, "eq": other}, values),
    )


def conditions_for(metadata: dict[str, Any]) -> st.SearchStrategy[list[dict[str, Any]] | None]:
    """None, or 1-3 conditions: random ones, and ones aimed at what the metadata will hold."""
    held = leaves(metadata)
    one = random_conditions
    if held:
        aimed = st.sampled_from(held).flatmap(lambda leaf: near(*leaf))
        one = st.one_of(aimed, aimed, random_conditions)
    return st.one_of(
        st.none(), st.lists(one, min_size=1, max_size=1), st.lists(one, max_size=3).filter(bool)
    )


# --- the model -----------------------------------------------------------------------------


class Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def model_apply(metadata: dict[str, Any], request_ops: list[dict[str, Any]]) -> dict[str, Any]:
    """The metadata after the ops, or Refused (then nothing is applied)."""
    result = copy.deepcopy(metadata)
    for op in request_ops:
        *parents, last = op["path"].split(".")
        node: Any = result
        for key in parents:
            if key not in node:
                if op["op"] == "remove":  # a missing parent: no error, nothing created
                    node = None
                    break
                node[key] = {}
            elif not isinstance(node[key], dict):  # null, numbers, strings, arrays, booleans
                raise Refused("INVALID_PATH")
            node = node[key]
        if node is None:
            continue
        if op["op"] == "set":
            node[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            node.pop(last, None)
        elif last not in node:
            node[last] = op["value"]  # inc counts from 0; max/min take the given value
        elif not is_number(node[last]):
            raise Refused("NOT_A_NUMBER")
        elif op["op"] == "inc":
            node[last] = node[last] + op["value"]
        elif op["op"] == "max":
            node[last] = max(node[last], op["value"])
        else:
            node[last] = min(node[last], op["value"])
    return result


def json_equal(left: Any, right: Any) -> bool:
    """Numbers by value (10 == 10.0), objects regardless of key order, 1 never equals true."""
    if is_number(left) and is_number(right):
        return bool(left == right)
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    return bool(left == right)


def lookup(metadata: dict[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = metadata
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def condition_holds(metadata: dict[str, Any], condition: dict[str, Any]) -> bool:
    found, stored = lookup(metadata, condition["path"])
    if not found:  # a missing path (or one through a non-object) holds for nothing
        return False
    ((comparator, wanted),) = ((k, v) for k, v in condition.items() if k != "path")
    if comparator == "eq":
        return json_equal(stored, wanted)
    if not is_number(stored):
        return False
    return {
        "gte": stored >= wanted,
        "gt": stored > wanted,
        "lte": stored <= wanted,
        "lt": stored < wanted,
    }[comparator]


def all_hold(metadata: dict[str, Any], request_conditions: list[dict[str, Any]] | None) -> bool:
    if not request_conditions:
        return False
    return all(condition_holds(metadata, condition) for condition in request_conditions)


def canonical(value: Any) -> str:
    """Exact JSON text regardless of key order: tells 1 from true from 1.0."""
    return json.dumps(value, sort_keys=True)


# --- the test ------------------------------------------------------------------------------

users = itertools.count(1)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_apply_agrees_with_the_model(client: Any, data: st.DataObject) -> None:
    # One client (and file) for the whole run; a fresh user, so a fresh row, per example.
    listed = (await client.get("/users/achievements/definitions")).json()
    achievement = listed[0]["id"] if listed else (await create_definition(client, "Model"))["id"]
    user = next(users)
    params = {"userId": user, "achievementId": achievement}
    row: dict[str, Any] | None = None  # what GET progress should answer
    metadata: dict[str, Any] = {}
    for number in range(data.draw(st.integers(min_value=1, max_value=10), label="requests")):
        ops = data.draw(request_ops, label=f"ops {number}")
        try:
            expected: dict[str, Any] | None = model_apply(metadata, ops)
        except Refused as refused:
            expected, code = None, refused.code
        conditions = data.draw(conditions_for(expected or metadata), label=f"unlockWhen {number}")
        body: dict[str, Any] = {"userId": user, "achievementId": achievement, "ops": ops}
        if conditions is not None:
            body["unlockWhen"] = conditions
        response = await client.post(APPLY, json=body)
        context = (number, body, response.text)
        if expected is None:
            assert_problem(response, 422, code)
            after = await client.get(PROGRESS, params=params)
            assert after.json() == row, context  # nothing applied, nothing created
            continue
        assert response.status_code == 200, context
        answer = response.json()
        assert canonical(answer["metadata"]) == canonical(expected), context
        locked = row is None or row["unlockedAt"] is None
        newly = locked and all_hold(expected, conditions)
        assert answer["newlyUnlocked"] is newly, context
        if newly:
            assert TIMESTAMP.match(answer["unlockedAt"]), context
        else:
            assert answer["unlockedAt"] == (None if row is None else row["unlockedAt"]), context
        if row is not None:
            assert answer["id"] == row["id"] and answer["createdAt"] == row["createdAt"]
            assert answer["updatedAt"] > row["updatedAt"], context
        row = {k: v for k, v in answer.items() if k != "newlyUnlocked"}
        metadata = expected
        stored = (await client.get(PROGRESS, params=params)).json()
        assert stored == row, context
