"""Account-level state that moto does not serve or serves out of step with the fleet: SESv2
GetAccount (and SES v1 quota), Lambda GetAccountSettings and provisioned concurrency, DynamoDB
Contributor Insights status, and live SQS depth in GetQueueAttributes."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from simulator.cloudwatch import Registry, insight_rule_names, series_values
from simulator.errors import ApiError
from simulator.fleet import Resource
from simulator.model import FleetModel

CODE_SIZE = 4_718_592  # the zip size moto reports for the fleet's functions, roughly


def _ses(model: FleetModel, account: str, region: str) -> Resource | None:
    found = model.fleet.of_kind("ses", account, region)
    return found[0] if found else None


def ses_quota(model: FleetModel, registry: Registry, account: str, region: str) -> dict[str, Any]:
    res = _ses(model, account, region)
    now = model.now()
    if res is None:  # a region nobody configured: a fresh sandbox account
        return {
            "production": False,
            "max24": 200.0,
            "rate": 1.0,
            "sent": 0.0,
            "enforcement": "HEALTHY",
            "enabled": True,
        }
    facts = model.facts_at(res, now)
    _, index = registry.place(account, region)
    sdef = index[("AWS/SES", "Send", ())]
    _, values = series_values(model, sdef, "Sum", 60, now - 86400, now)
    sent = min(float(sum(values)), float(facts["max_24h"]))
    return {
        "production": bool(facts["production_access"]),
        "max24": float(facts["max_24h"]),
        "rate": float(facts["max_rate"]),
        "sent": sent,
        "enforcement": str(facts.get("EnforcementStatus", "HEALTHY")),
        "enabled": bool(facts.get("SendingEnabled", True)),
    }


def sesv2_get_account(model: FleetModel, registry: Registry, account: str, region: str) -> dict[str, Any]:
    q = ses_quota(model, registry, account, region)
    out: dict[str, Any] = {
        "DedicatedIpAutoWarmupEnabled": False,
        "EnforcementStatus": q["enforcement"],
        "ProductionAccessEnabled": q["production"],
        "SendQuota": {"Max24HourSend": q["max24"], "MaxSendRate": q["rate"], "SentLast24Hours": q["sent"]},
        "SendingEnabled": q["enabled"],
        "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
    }
    if q["production"]:
        out["Details"] = {
            "MailType": "TRANSACTIONAL",
            "WebsiteURL": "https://shop.example.com",
            "ContactLanguage": "EN",
            "ReviewDetails": {"Status": "GRANTED", "CaseId": "1234567890"},
        }
    return out


def ses_v1_xml(action: str, model: FleetModel, registry: Registry, account: str, region: str) -> str:
    q = ses_quota(model, registry, account, region)
    if action == "GetSendQuota":
        result = (
            f"<Max24HourSend>{q['max24']}</Max24HourSend><MaxSendRate>{q['rate']}</MaxSendRate>"
            f"<SentLast24Hours>{q['sent']}</SentLast24Hours>"
        )
    else:  # GetAccountSendingEnabled
        result = f"<Enabled>{'true' if q['enabled'] else 'false'}</Enabled>"
    return (
        f'<{action}Response xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{escape(str(int(time.time() * 1000)))}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )


def lambda_account_settings(model: FleetModel, account: str, region: str) -> dict[str, Any]:
    limit = model.account_concurrency_limit(account)
    count = len(model.fleet.of_kind("lambda", account, region))
    return {
        "AccountLimit": {
            "TotalCodeSize": 80_530_636_800,
            "CodeSizeUnzipped": 262_144_000,
            "CodeSizeZipped": 52_428_800,
            "ConcurrentExecutions": limit,
            "UnreservedConcurrentExecutions": limit - model.reserved_total(account, region),
        },
        "AccountUsage": {"TotalCodeSize": count * CODE_SIZE, "FunctionCount": count},
    }


def _function(model: FleetModel, account: str, region: str, name: str) -> Resource:
    name = name.rsplit(":", 1)[-1] if name.startswith("arn:") else name
    res = model.fleet.by_uid.get(f"lambda:{name}")
    if res is None or res.account != account or res.region != region:
        raise ApiError(
            "ResourceNotFoundException", f"Function not found: arn:aws:lambda:{region}:{account}:function:{name}", 404
        )
    return res


def _in_moto(account: str, region: str, name: str) -> bool:
    """A function created in moto directly (not part of the fleet) still exists."""
    from moto.awslambda.models import lambda_backends

    try:
        lambda_backends[account][region].get_function(name.rsplit(":", 1)[-1] if name.startswith("arn:") else name)
    except Exception:  # noqa: BLE001 - moto raises its own not-found types
        return False
    return True


def lambda_provisioned_configs(model: FleetModel, account: str, region: str, name: str) -> dict[str, Any]:
    try:
        fn = _function(model, account, region, name)
    except ApiError:
        if _in_moto(account, region, name):
            return {"ProvisionedConcurrencyConfigs": []}
        raise
    configs = []
    if fn["provisioned"]:
        n = int(fn["provisioned"])
        configs.append(
            {
                "FunctionArn": f"{fn.arn}:live",
                "RequestedProvisionedConcurrentExecutions": n,
                "AvailableProvisionedConcurrentExecutions": n,
                "AllocatedProvisionedConcurrentExecutions": n,
                "Status": "READY",
                "LastModified": "2026-01-01T00:00:00.000+0000",
            }
        )
    return {"ProvisionedConcurrencyConfigs": configs}


def _table(model: FleetModel, account: str, region: str, name: str) -> Resource:
    res = model.fleet.by_uid.get(f"dynamodb:{name}")
    if res is None or res.account != account or res.region != region:
        raise ApiError("ResourceNotFoundException", f"Requested resource not found: Table: {name} not found")
    return res


def describe_contributor_insights(model: FleetModel, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
    table = _table(model, account, region, body.get("TableName", ""))
    enabled = table["contributor_insights"] != "off"
    out: dict[str, Any] = {
        "TableName": table.name,
        "ContributorInsightsStatus": "ENABLED" if enabled else "DISABLED",
        "ContributorInsightsRuleList": insight_rule_names(table),
    }
    if enabled:
        out["ContributorInsightsMode"] = table["contributor_insights"]
        out["LastUpdateDateTime"] = table.facts.get("insights_created_ms", 1767225600000) / 1000
    return out


# ListContributorInsights pages: MaxResults is at most 100 (botocore dynamodb 2012-08-10
# service-2.json, shape ListContributorInsightsLimit) and botocore has no paginator for it, so a
# caller follows NextToken itself. A page of 100 when MaxResults is not given, as the issue saw.
CONTRIBUTOR_INSIGHTS_PAGE = 100


def list_contributor_insights(model: FleetModel, account: str, region: str, body: dict[str, Any]) -> dict[str, Any]:
    tables = model.fleet.of_kind("dynamodb", account, region)
    if body.get("TableName"):
        tables = [_table(model, account, region, body["TableName"])]
    limit = body.get("MaxResults", CONTRIBUTOR_INSIGHTS_PAGE)
    if not isinstance(limit, int) or not 1 <= limit <= CONTRIBUTOR_INSIGHTS_PAGE:
        raise ApiError(
            "ValidationException",
            f"1 validation error detected: Value '{limit}' at 'maxResults' failed to satisfy "
            f"constraint: Member must have value less than or equal to {CONTRIBUTOR_INSIGHTS_PAGE}",
        )
    token = str(body.get("NextToken") or "")
    start = int(token) if token.isdigit() else 0
    if token and (not token.isdigit() or start >= len(tables)):
        raise ApiError("ValidationException", "Invalid NextToken")
    page = tables[start : start + limit]
    out: dict[str, Any] = {
        "ContributorInsightsSummaries": [
            {
                "TableName": t.name,
                "ContributorInsightsStatus": "ENABLED" if t["contributor_insights"] != "off" else "DISABLED",
                **(
                    {"ContributorInsightsMode": t["contributor_insights"]} if t["contributor_insights"] != "off" else {}
                ),
            }
            for t in page
        ]
    }
    if start + limit < len(tables):
        out["NextToken"] = str(start + limit)
    return out


def patch_queue_attributes(
    model: FleetModel, account: str, region: str, request: dict[str, Any], response: bytes
) -> bytes:
    """moto's queues are empty; the fleet's are not. Overwrite the live depth with the model's."""
    name = str(request.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1]
    res = model.fleet.by_uid.get(f"sqs:{name}")
    if res is None or res.account != account or res.region != region:
        return response
    try:
        data = json.loads(response)
    except ValueError:
        return response
    attrs = data.get("Attributes")
    if not isinstance(attrs, dict):
        return response
    minute = int(model.now() // 60) - 1
    d = model.drivers(res, np.array([minute], dtype=np.int64))
    live = {
        "ApproximateNumberOfMessages": d["backlog"][0],
        "ApproximateNumberOfMessagesNotVisible": d["inflight"][0],
        "ApproximateNumberOfMessagesDelayed": 0.0,
    }
    for attr, value in live.items():
        if attr in attrs:
            attrs[attr] = str(int(round(float(value))))
    return json.dumps(data).encode()


def patch_aliases(model: FleetModel, account: str, region: str, function: str, page: dict[str, Any]) -> dict[str, Any]:
    """A release by alias, as ListAliases shows it (botocore lambda 2015-03-31 AliasConfiguration):
    the fleet's alias (created in moto at version 1) invokes the version a scenario's
    `alias_version` fact names at this moment, and `alias_canary` ({version, weight}) routes that
    share to another (RoutingConfig.AdditionalVersionWeights). RevisionId changes with the alias."""
    res = model.fleet.by_uid.get(f"lambda:{function}")
    if res is None or res.account != account or res.region != region or not res["alias"]:
        return page
    facts = model.facts_at(res, model.now())
    for alias in page.get("Aliases") or []:
        if alias.get("Name") != res["alias"]:
            continue
        alias["FunctionVersion"] = str(facts.get("alias_version") or alias.get("FunctionVersion") or "1")
        canary = facts.get("alias_canary")
        if canary:
            alias["RoutingConfig"] = {"AdditionalVersionWeights": {str(canary["version"]): float(canary["weight"])}}
        else:
            alias.pop("RoutingConfig", None)
        state = json.dumps([alias["FunctionVersion"], alias.get("RoutingConfig")], sort_keys=True)
        alias["RevisionId"] = str(uuid.UUID(bytes=hashlib.md5(f"{res.uid}:{state}".encode()).digest()))
    return page


def revise_lambda_functions() -> None:
    """AWS moves a function's LastModified and RevisionId with every code or configuration update
    (botocore lambda 2015-03-31 FunctionConfiguration: RevisionId, "the latest updated revision
    of the function"); moto keeps LastModified from creation and serves no RevisionId. Patched
    once, so incremental discovery sees an updated function as changed, as it would on AWS."""
    import uuid

    from moto.awslambda.models import LambdaFunction
    from moto.core.utils import iso_8601_datetime_with_nanoseconds

    if getattr(LambdaFunction, "_fleetwatch_revised", False):
        return
    configuration, update_configuration, update_code = (
        LambdaFunction.get_configuration,
        LambdaFunction.update_configuration,
        LambdaFunction.update_function_code,
    )

    def revise(fn: Any) -> None:
        fn.last_modified = iso_8601_datetime_with_nanoseconds()
        fn._fleetwatch_revision = str(uuid.uuid4())

    def get_configuration(self: Any, *args: Any, **kw: Any) -> Any:
        out = configuration(self, *args, **kw)
        if not getattr(self, "_fleetwatch_revision", None):
            self._fleetwatch_revision = str(uuid.uuid4())
        out["RevisionId"] = self._fleetwatch_revision
        return out

    def updated_configuration(self: Any, *args: Any, **kw: Any) -> Any:
        revise(self)
        return update_configuration(self, *args, **kw)

    def updated_code(self: Any, *args: Any, **kw: Any) -> Any:
        revise(self)
        return update_code(self, *args, **kw)

    LambdaFunction.get_configuration = get_configuration
    LambdaFunction.update_configuration = updated_configuration
    LambdaFunction.update_function_code = updated_code
    LambdaFunction._fleetwatch_revised = True
