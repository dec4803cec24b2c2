"""The shipped IAM policy covers exactly what fleetwatch calls: every call is allowed, and
nothing is granted that fleetwatch never calls. (conftest.py also checks every call any test
made, when the session ends.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import botocore.session

from collector import aws as aws_module
from collector.policy import NEVER_GRANTED, allowed, load_policy
from fleetwatch.store import open_store
from tests.contract_kit import every_call


def test_policy_allows_every_call_and_grants_nothing_unused(fleet: Any, tmp_path: Path) -> None:
    made: set[str] = set()
    observer = lambda account, region, action: made.add(action)  # noqa: E731
    aws_module.OBSERVERS.append(observer)
    try:
        with open_store(tmp_path / "fw.db") as store:
            every_call(fleet, store)
    finally:
        aws_module.OBSERVERS.remove(observer)

    policy = load_policy()
    assert sorted(a for a in made if not allowed(policy, a)) == []
    unused = sorted(p for p in policy if p not in made)
    assert unused == [], f"the policy grants actions fleetwatch never calls: {unused}"
    assert not any(allowed(policy, a) for a in NEVER_GRANTED) and not made & NEVER_GRANTED


def test_no_call_fleetwatch_may_make_answers_with_function_code() -> None:
    """Read-only means no code: no Lambda operation the policy grants has an answer that can
    hold a FunctionCodeLocation (the presigned URL to a function's deployment package) or a
    layer's content location (botocore lambda model)."""
    model = botocore.session.get_session().get_service_model("lambda")
    policy = load_policy()
    granted = [op for op in model.operation_names if allowed(policy, f"lambda:{op}")]
    assert "ListFunctions" in granted and "GetFunctionConcurrency" in granted and "ListTags" in granted
    leaks = {op: sorted(_reaches(model.operation_model(op).output_shape, CODE_SHAPES)) for op in granted}
    assert {op: found for op, found in leaks.items() if found} == {}
    # and the check would see one: GetFunction's answer holds the code's location
    assert _reaches(model.operation_model("GetFunction").output_shape, CODE_SHAPES) == {"FunctionCodeLocation"}


CODE_SHAPES = {"FunctionCodeLocation", "LayerVersionContentOutput"}


def _reaches(shape: Any, names: set[str], seen: set[str] | None = None) -> set[str]:
    """Which of the shapes `names` an answer of `shape` can contain, at any depth."""
    seen = set() if seen is None else seen
    if shape is None or shape.name in seen:
        return set()
    seen.add(shape.name)
    found = {shape.name} & names
    for child in list(getattr(shape, "members", {}).values()) + [
        getattr(shape, "member", None),
        getattr(shape, "value", None),
    ]:
        found |= _reaches(child, names, seen)
    return found
