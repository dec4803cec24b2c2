"""The shipped least-privilege IAM policy (iam/fleetwatch-readonly-policy.json), read back so
the tests can check every call fleetwatch makes against it."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

POLICY_PATH = Path(__file__).resolve().parents[1] / "iam" / "fleetwatch-readonly-policy.json"
# Calls IAM cannot deny: no permission is needed to ask who you are.
ALWAYS_ALLOWED = {"sts:GetCallerIdentity"}
# Never granted: lambda:GetFunction answers with a presigned URL to download the function's
# code (botocore lambda model: GetFunctionResponse.Code, a FunctionCodeLocation), so a
# read-only policy holding it can read every function's code.
NEVER_GRANTED = {"lambda:GetFunction"}


def load_policy(path: Path = POLICY_PATH) -> list[str]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    actions: list[str] = []
    for statement in doc["Statement"]:
        if statement.get("Effect") != "Allow":
            continue
        granted = statement["Action"]
        actions.extend([granted] if isinstance(granted, str) else granted)
    return actions


def allowed(policy: list[str], action: str) -> bool:
    return action in ALWAYS_ALLOWED or any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in policy)
