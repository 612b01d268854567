"""Model-based test: random sequences of apply requests through HTTP agree with a small pure
Python model of API.md's ops and conditions, including the moment of unlocking."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import PROGRESS, create_definition

PATHS = ["a", "b", "b.c", "b.d", "b.c.e"]
scalars = st.one_of(
    st.integers(min_value=-5, max_value=5), st.booleans(), st.none(), st.sampled_from(["x", "y"])
)
values = st.one_of(scalars, st.dictionaries(st.sampled_from(["c", "d", "z"]), scalars, max_size=2))
numbers = st.integers(min_value=-5, max_value=5)
ops = st.one_of(
    st.builds(lambda o, p, v: {"op": o, "path": p, "value": v},
              st.sampled_from(["inc", "max", "min"]), st.sampled_from(PATHS), numbers),
    st.builds(lambda p, v: {"op": "set", "path": p, "value": v}, st.sampled_from(PATHS), values),
    st.builds(lambda p: {"op": "remove", "path": p}, st.sampled_from(PATHS)),
)  # fmt: skip
conditions = st.one_of(
    st.builds(lambda c, p, v: {"path": p, c: v},
              st.sampled_from(["gte", "gt", "lte", "lt"]), st.sampled_from(PATHS), numbers),
    st.builds(lambda p, v: {"path": p, "eq": v}, st.sampled_from(PATHS), values),
)  # fmt: skip
requests = st.lists(
    st.tuples(st.lists(ops, max_size=4), st.lists(conditions, max_size=2)), min_size=1, max_size=6
)


class Refused(Exception):
    def __init__(self, code: str) -> None:
        self.code = code


def is_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def model_apply(metadata: dict[str, Any], request_ops: list[dict[str, Any]]) -> dict[str, Any]:
    result = copy.deepcopy(metadata)
    for op in request_ops:
        *parents, last = op["path"].split(".")
        node: Any = result
        for key in parents:
            if key not in node:
                if op["op"] == "remove":
                    node = None
                    break
                node[key] = {}
            elif not isinstance(node[key], dict):
                raise Refused("INVALID_PATH")
            node = node[key]
        if node is None:
            continue
        if op["op"] == "set":
            node[last] = op["value"]
        elif op["op"] == "remove":
            node.pop(last, None)
        elif last not in node:
            node[last] = op["value"]
        elif not is_number(node[last]):
            raise Refused("NOT_A_NUMBER")
        elif op["op"] == "inc":
            node[last] += op["value"]
        else:
            node[last] = (max if op["op"] == "max" else min)(node[last], op["value"])
    return result


def equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool) or left is None or right is None:
        return type(left) is type(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(equal(left[k], right[k]) for k in left)
    return type(left) is type(right) and left == right


def holds(metadata: dict[str, Any], request_conditions: list[dict[str, Any]]) -> bool:
    if not request_conditions:
        return False
    for condition in request_conditions:
        node: Any = metadata
        for key in condition["path"].split("."):
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        ((comparator, wanted),) = ((k, v) for k, v in condition.items() if k != "path")
        if comparator == "eq":
            if not equal(node, wanted):
                return False
        elif not is_number(node) or not {
            "gte": node >= wanted, "gt": node > wanted, "lte": node <= wanted, "lt": node < wanted
        }[comparator]:  # fmt: skip
            return False
    return True


users = itertools.count(1)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=requests)
async def test_apply_agrees_with_the_model(client: Any, sequence: list[Any]) -> None:
    listed = (await client.get("/users/achievements/definitions")).json()
    achievement = listed[0]["id"] if listed else (await create_definition(client, "M"))["id"]
    user = next(users)
    metadata: dict[str, Any] = {}
    unlocked_at = None
    for request_ops, request_conditions in sequence:
        body = {"userId": user, "achievementId": achievement, "ops": request_ops}
        if request_conditions:
            body["unlockWhen"] = request_conditions
        response = await client.post(f"{PROGRESS}/apply", json=body)
        try:
            expected = model_apply(metadata, request_ops)
        except Refused as refused:
            assert response.status_code == 422, response.text
            assert response.json()["code"] == refused.code
            continue
        assert response.status_code == 200, response.text
        answer = response.json()
        assert equal(answer["metadata"], expected), (answer["metadata"], expected)
        newly = unlocked_at is None and holds(expected, request_conditions)
        assert answer["newlyUnlocked"] is newly
        if newly:
            unlocked_at = answer["unlockedAt"]
            assert unlocked_at is not None
        assert answer["unlockedAt"] == unlocked_at
        metadata = expected
    stored = await client.get(PROGRESS, params={"userId": user, "achievementId": achievement})
    if stored.json() is not None:
        assert equal(stored.json()["metadata"], metadata)
