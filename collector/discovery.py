"""Discovery: what the fleet is made of, per account and region, as facts the detectors need.

Each kind is discovered on its own; a kind that fails is reported as an errored source and its
resources are left as they were (not marked gone), while the other kinds carry on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from collector import pacing, probes
from collector.aws import NO_CREDENTIALS, AssumeRoleError, Place, epoch_seconds
from collector.incremental import Prior
from collector.limits import max_connections

Clients = Callable[[str], Any]
# Per-resource detail calls (tags, concurrency) overlap a few at a time, each released by the
# pacer (collector/pacing.py) below the service's documented rate; the adaptive retry mode
# slows them further if AWS throttles the control plane all the same.
DETAIL_THREADS = 4


@dataclass
class Found:
    kind: str
    name: str
    arn: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


# A global secondary index: its series (TableName + GlobalSecondaryIndexName) need a resource row
# of their own, `<table id>/index/<name>` (fleetwatch.store.index_resource_id).
INDEX_KIND = "dynamodb_index"


def scoped(found: list[Found], admits: Callable[[str, str, dict[str, str]], bool]) -> list[Found]:
    """What the scope admits; a global secondary index goes with its table."""
    kept = [f for f in found if f.kind != INDEX_KIND and admits(f.kind, f.name, f.tags)]
    tables = {f.name for f in kept if f.kind == "dynamodb"}
    return kept + [f for f in found if f.kind == INDEX_KIND and f.facts.get("table") in tables]


def resource_id(kind: str, place: Place, name: str) -> str:
    return f"{'dynamodb' if kind == INDEX_KIND else kind}/{place.account}/{place.region}/{name}"


def _pages(client: Any, operation: str, key: str, **params: Any) -> Iterator[Any]:
    if client.can_paginate(operation):
        for page in client.get_paginator(operation).paginate(**params):
            yield from page.get(key, [])
    else:
        yield from getattr(client, operation)(**params).get(key, [])


_VANISHED = {
    "ResourceNotFoundException",
    "ResourceNotFound",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "NotFoundException",
    "DBInstanceNotFound",
    "DBProxyNotFoundFault",
}


def _parallel(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """Detail per listed resource. One deleted between the list and its detail call is skipped
    (it will be marked gone), not an error of the whole kind."""

    def one(item: Any) -> Any:
        try:
            return fn(item)
        except ClientError as exc:
            if _error_code(exc) in _VANISHED:
                return None
            raise

    if len(items) <= 1:
        return [r for r in map(one, items) if r is not None]
    with ThreadPoolExecutor(max_workers=DETAIL_THREADS) as pool:
        # In the caller's context: the workers' calls wait on the caller's pacer.
        return [r for r in pool.map(pacing.in_context(one), items) if r is not None]


def _tag_list(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def _error_code(exc: Exception) -> str:
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


# -- Lambda -------------------------------------------------------------------------------------

# RDS hosts: an instance (`db.abc.us-east-1.rds.amazonaws.com`), an RDS Proxy (`.proxy-abc.`), an
# Aurora cluster's writer and reader endpoints (`cluster.cluster-abc.` / `.cluster-ro-abc.`, "Types
# of Aurora endpoints", https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/
# Aurora.Overview.Endpoints.html), in any partition (China: `.amazonaws.com.cn`). A custom
# endpoint (`.cluster-custom-`) is named after the endpoint, not the cluster: it is not linked.
_RDS_HOST = re.compile(
    r"\b([a-z][a-z0-9-]{0,62})\.(proxy-|cluster-(?:ro-|custom-)?)?[a-z0-9]+\.[a-z0-9-]+\.rds\.amazonaws\.com(?:\.cn)?\b"
)
# Queue URLs, "Amazon SQS queue and message identifiers" (https://docs.aws.amazon.com/
# AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-queue-message-identifiers.html), also on the
# China regions' `.amazonaws.com.cn` endpoints and the legacy `queue.amazonaws.com` ones.
_SQS_URL = re.compile(
    r"^https://(?:sqs\.[a-z0-9-]+|(?:[a-z0-9-]+\.)?queue)\.amazonaws\.com(?:\.cn)?/\d{12}/([\w-]{1,80}(?:\.fifo)?)$"
)
_ARN = re.compile(r"^arn:aws[a-z-]*:(dynamodb|sqs):[a-z0-9-]+:\d{12}:(?:table/)?([\w.-]{1,255})")
_NAME = re.compile(r"^[\w.-]{3,255}$")
# Mail through SES: an SES ARN (identity, configuration set), or a key naming SES
# (SES_CONFIGURATION_SET, SES_FROM_ADDRESS, ...). The account's SES resource is "ses:account".
_SES_ARN = re.compile(r"^arn:aws[a-z-]*:ses:")
_SES_KEY = re.compile(r"(^|_)SES(_|$)")


def uses_from_environment(env: dict[str, str]) -> list[str]:
    """What a function calls, as `kind:name`, read from its environment variables: RDS, Aurora
    cluster (`rds_cluster:`, resolved to its instances by `link_clusters`) and RDS Proxy endpoints
    (also inside connection strings), SQS URLs, table and queue ARNs, plain
    names under *TABLE*/*QUEUE* keys, and SES (an SES ARN or a key naming SES: the account's
    SES resource). Only those names are kept, never a value: environments
    carry secrets."""
    uses = set()
    for key, value in env.items():
        value = str(value)
        for host in _RDS_HOST.finditer(value):
            prefix = host.group(2) or ""
            if prefix == "cluster-custom-":
                continue
            kind = "rds_proxy" if prefix == "proxy-" else "rds_cluster" if prefix else "rds"
            uses.add(f"{kind}:{host.group(1)}")
        if m := _SQS_URL.match(value):
            uses.add(f"sqs:{m.group(1)}")
        elif m := _ARN.match(value):
            uses.add(f"{m.group(1)}:{m.group(2)}")
        elif _NAME.match(value) and ("TABLE" in key.upper() or "QUEUE" in key.upper()):
            uses.add(f"{'dynamodb' if 'TABLE' in key.upper() else 'sqs'}:{value}")
        if _SES_ARN.match(value) or _SES_KEY.search(key.upper()):
            uses.add("ses:account")
    return sorted(uses)


_STREAM_ARN = re.compile(r"^arn:aws[a-z-]*:(kinesis:[^:]+:\d{12}:stream/|dynamodb:[^:]+:\d{12}:table/[^/]+/stream/)")


# The Lambda Insights extension is a layer named LambdaInsightsExtension (or ...-Arm64) in an
# AWS-owned account ("Available versions of the Lambda Insights extension", .../AmazonCloudWatch/
# latest/monitoring/Lambda-Insights-extension-versions.html).
_INSIGHTS_LAYER = re.compile(r":layer:LambdaInsightsExtension(-Arm64)?:\d+$")


def coldstart_facts(fn: dict[str, Any]) -> dict[str, Any]:
    """Where a function's cold starts can be read, from ListFunctions' FunctionConfiguration
    (botocore lambda/2015-03-31 shapes TracingConfigResponse, LayersReferenceList, LoggingConfig,
    SnapStartResponse): its X-Ray tracing mode, whether the Lambda Insights extension is
    installed, its log group and log format (REPORT lines go to LoggingConfig.LogGroup, by
    default /aws/lambda/<name>), and SnapStart (whose restores are cold starts X-Ray does not
    mark as Initialization)."""
    logging = fn.get("LoggingConfig") or {}
    return {
        "tracing": (fn.get("TracingConfig") or {}).get("Mode", "PassThrough"),
        "lambda_insights": any(_INSIGHTS_LAYER.search(str(layer.get("Arn", ""))) for layer in fn.get("Layers") or []),
        "log_group": logging.get("LogGroup") or f"/aws/lambda/{fn['FunctionName']}",
        "log_format": logging.get("LogFormat") or "Text",
        "snap_start": (fn.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions",
    }


def lambdas(clients: Clients, place: Place, prior: Prior | None = None) -> list[Found]:
    prior = prior or Prior()
    client = clients("lambda")
    functions = list(_pages(client, "list_functions", "Functions"))
    mappings: dict[str, list[dict[str, Any]]] = {}
    for m in _pages(client, "list_event_source_mappings", "EventSourceMappings"):
        fn_name = str(m.get("FunctionArn", "")).split(":function:")[-1].split(":")[0]
        mappings.setdefault(fn_name, []).append(
            {"source_arn": m.get("EventSourceArn", ""), "state": m.get("State", ""), "batch_size": m.get("BatchSize")}
        )

    def detail(fn: dict[str, Any]) -> Found:
        # ListFunctions carries the configuration (botocore lambda model: FunctionConfiguration).
        # Tags and reserved concurrency come from two narrow calls rather than GetFunction, whose
        # answer holds a presigned URL to download the function's code (FunctionCodeLocation),
        # which a read-only policy must not grant.
        name = fn["FunctionName"]
        facts = {
            "memory": fn.get("MemorySize"),
            "timeout": fn.get("Timeout"),
            "runtime": fn.get("Runtime", ""),
            "code_sha256": fn.get("CodeSha256", ""),
            "last_modified": fn.get("LastModified", ""),
            "version": fn.get("Version", ""),
            "revision_id": fn.get("RevisionId", ""),
            "event_sources": mappings.get(name, []),
            # Stream event source mappings publish IteratorAge; a dead-letter queue (ListFunctions'
            # FunctionConfiguration.DeadLetterConfig, botocore lambda 2015-03-31) means async invokes.
            "stream_consumer": any(_STREAM_ARN.match(str(m["source_arn"])) for m in mappings.get(name, [])),
            "async_invoked": bool((fn.get("DeadLetterConfig") or {}).get("TargetArn")),
            "uses": uses_from_environment((fn.get("Environment") or {}).get("Variables") or {}),
            **coldstart_facts(fn),
        }
        # RevisionId moves with every change to the function's code or configuration
        # (FunctionConfiguration.RevisionId, "the latest updated revision of the function"); tags
        # and concurrency settings need not move it, so they are also refreshed by age.
        marker = f"{fn.get('RevisionId', '')}|{fn.get('LastModified', '')}"
        row = prior.stored("lambda", name, marker)
        if row is not None:
            return Found("lambda", name, fn["FunctionArn"], *prior.kept(row, facts))
        tags = client.list_tags(Resource=fn["FunctionArn"]).get("Tags") or {}
        reserved = client.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
        provisioned = [
            c
            for c in _pages(
                client, "list_provisioned_concurrency_configs", "ProvisionedConcurrencyConfigs", FunctionName=name
            )
        ]
        facts.update(
            {
                "reserved_concurrency": reserved,
                "provisioned_concurrency": sum(
                    int(c.get("RequestedProvisionedConcurrentExecutions", 0)) for c in provisioned
                ),
                "provisioned_configs": [
                    {
                        "qualifier": str(c.get("FunctionArn", "")).rsplit(":", 1)[-1],
                        "requested": c.get("RequestedProvisionedConcurrentExecutions"),
                        "status": c.get("Status"),
                    }
                    for c in provisioned
                ],
                # Aliases, so a release that moves one is seen as a deploy (collector/probes.py).
                probes.ALIASES: probes.alias_state(list(_pages(client, "list_aliases", "Aliases", FunctionName=name))),
                probes.ALIASES_AT: prior.now,
            }
        )
        return prior.stamp(Found("lambda", name, fn["FunctionArn"], dict(tags), facts), marker)

    return _parallel(detail, functions)


# -- SQS ----------------------------------------------------------------------------------------


def queues(
    clients: Clients, place: Place, prior: Prior | None = None, consumers: dict[str, list[str]] | None = None
) -> list[Found]:
    prior = prior or Prior()
    client = clients("sqs")
    urls = list(_pages(client, "list_queues", "QueueUrls", MaxResults=1000))

    def detail(url: str) -> Found:
        # ListQueues gives URLs only, no change marker: attributes and tags are refreshed by age.
        row = prior.stored("sqs", url.rstrip("/").rsplit("/", 1)[-1], "")
        if row is not None:
            kept = Found(
                "sqs",
                row["name"],
                row.get("arn", ""),
                *prior.kept(
                    row, {"url": url, "dlq_of": [], "consumers": (consumers or {}).get(row.get("arn", ""), [])}
                ),
            )
            for derived in ("is_dlq", "retention_shorter_than_source"):
                kept.facts.pop(derived, None)
            return kept
        attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        tags = client.list_queue_tags(QueueUrl=url).get("Tags", {})
        arn = attrs.get("QueueArn", "")
        redrive = json.loads(attrs["RedrivePolicy"]) if attrs.get("RedrivePolicy") else None
        facts: dict[str, Any] = {
            "url": url,
            "retention": int(attrs.get("MessageRetentionPeriod", 345600)),
            "visibility_timeout": int(attrs.get("VisibilityTimeout", 30)),
            "fifo": url.endswith(".fifo"),
            "dlq": redrive["deadLetterTargetArn"].rsplit(":", 1)[-1] if redrive else None,
            "max_receive_count": int(redrive["maxReceiveCount"]) if redrive else None,
            "dlq_of": [],
            "consumers": (consumers or {}).get(arn, []),
        }
        return prior.stamp(Found("sqs", url.rstrip("/").rsplit("/", 1)[-1], arn, dict(tags), facts), "")

    found = _parallel(detail, urls)
    by_name = {f.name: f for f in found}
    for f in found:
        dlq = by_name.get(f.facts["dlq"] or "")
        if dlq is not None:
            dlq.facts["dlq_of"].append(f.name)
            dlq.facts["is_dlq"] = True
            # Expiry counts from the original enqueue time, so a DLQ must outlive its source.
            dlq.facts["retention_shorter_than_source"] = dlq.facts["retention"] <= f.facts["retention"]
    return found


# -- DynamoDB -------------------------------------------------------------------------------------

# ListContributorInsights has no botocore paginator (dynamodb 2012-08-10 paginators-1.json) and
# returns at most 100 a page (service-2.json, ListContributorInsightsLimit): NextToken by hand.
INSIGHTS_PAGE, INSIGHTS_MAX_PAGES = 100, 1000


def contributor_insights(client: Any) -> list[dict[str, Any]]:
    """Every Contributor Insights summary of the region, all pages (bounded: a token that comes
    back twice or more than INSIGHTS_MAX_PAGES pages is an answer that cannot be read)."""
    out: list[dict[str, Any]] = []
    token, seen = "", set()
    for _ in range(INSIGHTS_MAX_PAGES):
        page = client.list_contributor_insights(MaxResults=INSIGHTS_PAGE, **({"NextToken": token} if token else {}))
        out.extend(page.get("ContributorInsightsSummaries") or [])
        token = page.get("NextToken") or ""
        if not token:
            return out
        if token in seen:
            raise ValueError("ListContributorInsights: the same NextToken came back twice")
        seen.add(token)
    raise ValueError(f"ListContributorInsights: more than {INSIGHTS_MAX_PAGES} pages")


def tables(clients: Clients, place: Place, prior: Prior | None = None) -> list[Found]:
    prior = prior or Prior()
    client = clients("dynamodb")
    names = list(_pages(client, "list_tables", "TableNames"))
    insights = {c["TableName"]: c for c in contributor_insights(client) if not c.get("IndexName")}

    def detail(name: str) -> Found:
        # ListTables gives names only; the Contributor Insights summary is the one marker the
        # lists carry. DescribeTable and the table's tags are otherwise refreshed by age.
        marker = "|".join(
            str(insights.get(name, {}).get(k, "")) for k in ("ContributorInsightsStatus", "ContributorInsightsMode")
        )
        row = prior.stored("dynamodb", name, marker)
        if row is not None:
            return Found("dynamodb", name, row.get("arn", ""), *prior.kept(row, {}))
        t = client.describe_table(TableName=name)["Table"]
        tags = {
            x["Key"]: x["Value"] for x in _pages(client, "list_tags_of_resource", "Tags", ResourceArn=t["TableArn"])
        }
        billing = t.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
        throughput = t.get("ProvisionedThroughput", {})
        ci = insights.get(name, {})
        rules: list[str] = []
        if ci.get("ContributorInsightsStatus") == "ENABLED":
            # The list call does not name the rules (botocore dynamodb model: ContributorInsightsSummary
            # has no ContributorInsightsRuleList); GetInsightRuleReport needs them.
            described = client.describe_contributor_insights(TableName=name)
            rules = list(described.get("ContributorInsightsRuleList") or [])
            ci = {
                **ci,
                "ContributorInsightsMode": described.get(
                    "ContributorInsightsMode", ci.get("ContributorInsightsMode", "")
                ),
            }
        facts = {
            "billing": billing,
            "read_capacity": throughput.get("ReadCapacityUnits") if billing == "PROVISIONED" else None,
            "write_capacity": throughput.get("WriteCapacityUnits") if billing == "PROVISIONED" else None,
            "sort_key": any(k["KeyType"] == "RANGE" for k in t.get("KeySchema", [])),
            "indexes": [g["IndexName"] for g in t.get("GlobalSecondaryIndexes", [])],
            "contributor_insights": ci.get("ContributorInsightsStatus", "DISABLED"),
            "contributor_insights_mode": ci.get("ContributorInsightsMode", "")
            if ci.get("ContributorInsightsStatus") == "ENABLED"
            else "",
            "contributor_insights_rules": rules,
        }
        return prior.stamp(Found("dynamodb", name, t["TableArn"], tags, facts), marker)

    found = _parallel(detail, names)
    return found + [
        Found(
            INDEX_KIND,
            f"{t.name}/index/{index}",
            f"{t.arn}/index/{index}",
            dict(t.tags),
            {"table": t.name, "index": index},
        )
        for t in found
        for index in t.facts.get("indexes") or []
    ]


# -- RDS ----------------------------------------------------------------------------------------


def databases(clients: Clients, place: Place, prior: Prior | None = None) -> list[Found]:
    client = clients("rds")
    instances = list(_pages(client, "describe_db_instances", "DBInstances"))
    group_values: dict[str, str | None] = {}

    def group_max_connections(group: str) -> str | None:
        if group not in group_values:
            value = None
            try:
                for p in _pages(client, "describe_db_parameters", "Parameters", DBParameterGroupName=group):
                    if p.get("ParameterName") == "max_connections":
                        value = p.get("ParameterValue")
            except ClientError as exc:
                if _error_code(exc) not in ("DBParameterGroupNotFound", "DBParameterGroupNotFoundFault"):
                    raise
            group_values[group] = value
        return group_values[group]

    found = []
    for db in instances:
        groups = [g["DBParameterGroupName"] for g in db.get("DBParameterGroups", [])]
        parameter = next((v for v in (group_max_connections(g) for g in groups) if v), None)
        value, estimated, how = max_connections(db.get("Engine", ""), db.get("DBInstanceClass", ""), parameter)
        facts = {
            "engine": db.get("Engine"),
            "engine_version": db.get("EngineVersion"),
            "instance_class": db.get("DBInstanceClass"),
            "status": db.get("DBInstanceStatus"),
            "parameter_groups": groups,
            "cluster": db.get("DBClusterIdentifier"),
            "max_connections": value,
            "max_connections_estimated": estimated,
            "max_connections_source": how,
        }
        found.append(
            Found("rds", db["DBInstanceIdentifier"], db.get("DBInstanceArn", ""), _tag_list(db.get("TagList")), facts)
        )
    return found


def proxies(clients: Clients, place: Place, prior: Prior | None = None) -> list[Found]:
    prior = prior or Prior()
    client = clients("rds")
    found = []
    for proxy in _pages(client, "describe_db_proxies", "DBProxies"):
        name = proxy["DBProxyName"]
        # DBProxy.UpdatedDate moves with ModifyDBProxy; targets and tags are also refreshed by age.
        marker = f"{_epoch(proxy.get('UpdatedDate'))}|{proxy.get('Status', '')}"
        row = prior.stored("rds_proxy", name, marker)
        if row is not None:
            found.append(
                Found("rds_proxy", name, proxy["DBProxyArn"], *prior.kept(row, {"status": proxy.get("Status")}))
            )
            continue
        targets = list(_pages(client, "describe_db_proxy_targets", "Targets", DBProxyName=name))
        groups = list(_pages(client, "describe_db_proxy_target_groups", "TargetGroups", DBProxyName=name))
        pool: dict[str, Any] = next((g.get("ConnectionPoolConfig", {}) for g in groups if g.get("IsDefault", True)), {})
        tags = _tag_list(client.list_tags_for_resource(ResourceName=proxy["DBProxyArn"]).get("TagList"))
        facts = {
            "engine_family": proxy.get("EngineFamily"),
            "status": proxy.get("Status"),
            "targets": [t.get("RdsResourceId") for t in targets if t.get("Type") in ("RDS_INSTANCE", None)],
            "max_connections_percent": pool.get("MaxConnectionsPercent"),
            "max_idle_connections_percent": pool.get("MaxIdleConnectionsPercent"),
            "connection_borrow_timeout": pool.get("ConnectionBorrowTimeout"),
        }
        found.append(prior.stamp(Found("rds_proxy", name, proxy["DBProxyArn"], tags, facts), marker))
    return found


# -- EventBridge schedules ------------------------------------------------------------------------


def schedules(clients: Clients, place: Place, prior: Prior | None = None) -> list[Found]:
    prior = prior or Prior()
    client = clients("events")
    rules = [r for r in _pages(client, "list_rules", "Rules") if r.get("ScheduleExpression")]

    def detail(rule: dict[str, Any]) -> Found:
        # ListRules carries the expression and state, not the targets or tags: those by age.
        listed = {
            "expression": rule["ScheduleExpression"],
            "state": rule.get("State"),
            "event_bus": rule.get("EventBusName", "default"),
        }
        row = prior.stored("schedule", rule["Name"], "")
        if row is not None:
            return Found("schedule", rule["Name"], rule["Arn"], *prior.kept(row, listed))
        targets = list(_pages(client, "list_targets_by_rule", "Targets", Rule=rule["Name"]))
        tags = _tag_list(client.list_tags_for_resource(ResourceARN=rule["Arn"]).get("Tags"))
        facts = {
            "expression": rule["ScheduleExpression"],
            "state": rule.get("State"),
            "event_bus": rule.get("EventBusName", "default"),
            "targets": [t["Arn"] for t in targets],
            "target_functions": [
                t["Arn"].split(":function:")[-1].split(":")[0] for t in targets if ":function:" in t["Arn"]
            ],
        }
        return prior.stamp(Found("schedule", rule["Name"], rule["Arn"], tags, facts), "")

    return _parallel(detail, rules)


def _partition(region: str) -> str:
    """The ARN partition of a region (AWS General Reference, "Amazon Resource Names")."""
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def _epoch(value: Any) -> int | None:
    return None if value is None else epoch_seconds(value)


def scheduler_schedules(clients: Clients, place: Place, prior: Prior | None = None) -> list[Found]:
    """EventBridge Scheduler schedules (botocore scheduler 2021-06-30: ListSchedules gives
    ScheduleSummary — Name, GroupName, State, CreationDate, Target.Arn; GetSchedule adds
    ScheduleExpression, ScheduleExpressionTimezone, FlexibleTimeWindow, StartDate, EndDate).
    AWS/Scheduler publishes its metrics per ScheduleGroup only (Scheduler user guide, "Monitoring
    with CloudWatch", dimension ScheduleGroup), so a schedule's own runs are read from its group
    only when it is alone there (`group_alone`); otherwise from a target only it invokes."""
    prior = prior or Prior()
    client = clients("scheduler")
    summaries = list(_pages(client, "list_schedules", "Schedules"))
    per_group: dict[str, int] = {}
    for s in summaries:
        per_group[s.get("GroupName", "default")] = per_group.get(s.get("GroupName", "default"), 0) + 1
    tagged: dict[str, dict[str, str]] = {}

    def group_tags(group: str) -> dict[str, str]:
        if group not in tagged:
            arn = f"arn:{_partition(place.region)}:scheduler:{place.region}:{place.account}:schedule-group/{group}"
            tagged[group] = _tag_list(client.list_tags_for_resource(ResourceArn=arn).get("Tags"))
        return tagged[group]

    def detail(summary: dict[str, Any]) -> Found:
        group = summary.get("GroupName", "default")
        name = summary["Name"] if group == "default" else f"{group}:{summary['Name']}"
        # ScheduleSummary.LastModificationDate moves with every UpdateSchedule: GetSchedule only
        # then (and by age, for the group's tags).
        marker = f"{_epoch(summary.get('LastModificationDate'))}|{summary.get('State', '')}"
        row = prior.stored("schedule", name, marker)
        if row is not None:
            return Found(
                "schedule",
                name,
                summary.get("Arn") or row.get("arn", ""),
                *prior.kept(
                    row,
                    {
                        "group_alone": per_group.get(group, 0) == 1,
                        "state": summary.get("State", row["facts"].get("state")),
                    },
                ),
            )
        got = client.get_schedule(Name=summary["Name"], GroupName=group)
        target = (got.get("Target") or summary.get("Target") or {}).get("Arn", "")
        window = got.get("FlexibleTimeWindow") or {}
        facts = {
            "scheduler": True,
            "group": group,
            "group_alone": per_group.get(group, 0) == 1,
            "expression": got.get("ScheduleExpression", ""),
            "timezone": got.get("ScheduleExpressionTimezone") or "UTC",
            "state": got.get("State", summary.get("State")),
            "flexible_window_minutes": int(window.get("MaximumWindowInMinutes") or 0)
            if window.get("Mode") == "FLEXIBLE"
            else 0,
            "created_at": _epoch(got.get("CreationDate") or summary.get("CreationDate")),
            "start_date": _epoch(got.get("StartDate")),
            "end_date": _epoch(got.get("EndDate")),
            "targets": [target] if target else [],
            "target_functions": [f for f in [_function_of(target)] if f],
        }
        # "You can only assign tags to schedule groups" (botocore scheduler, TagResource): the
        # group's tags describe its schedules. The default group cannot be tagged.
        tags = group_tags(group) if group != "default" else {}
        return prior.stamp(Found("schedule", name, summary.get("Arn", got.get("Arn", "")), tags, facts), marker)

    return _parallel(detail, summaries)


# -- API Gateway ----------------------------------------------------------------------------------


def _function_of(uri: str) -> str | None:
    if ":function:" not in uri:
        return None
    return uri.split(":function:")[-1].split("/")[0].split(":")[0]


def apis(clients: Clients, place: Place, prior: Prior | None = None) -> list[Found]:
    """REST and HTTP APIs. Their lists carry no change marker (RestApi and Api have a creation
    date only): stages and the functions integrated are refreshed by age, which also keeps
    GetResources within its own quota (5 requests every 2 seconds per account)."""
    prior = prior or Prior()
    found = []
    rest = clients("apigateway")
    for api in _pages(rest, "get_rest_apis", "items"):
        arn = f"arn:aws:apigateway:{place.region}::/restapis/{api['id']}"
        row = prior.stored("api", api["name"], api["id"])
        if row is not None:
            found.append(Found("api", api["name"], arn, dict(api.get("tags") or {}), prior.kept(row, {})[1]))
            continue
        stages = [s["stageName"] for s in rest.get_stages(restApiId=api["id"]).get("item", [])]
        functions = set()
        for res in _pages(rest, "get_resources", "items", restApiId=api["id"], embed=["methods"]):
            for method in (res.get("resourceMethods") or {}).values():
                fn = _function_of(str((method.get("methodIntegration") or {}).get("uri", "")))
                if fn:
                    functions.add(fn)
        found.append(
            prior.stamp(
                Found(
                    "api",
                    api["name"],
                    arn,
                    dict(api.get("tags") or {}),
                    {"type": "REST", "api_id": api["id"], "stages": stages, "functions": sorted(functions)},
                ),
                api["id"],
            )
        )
    http = clients("apigatewayv2")
    for api in _pages(http, "get_apis", "Items"):
        if api.get("ProtocolType") != "HTTP":
            continue
        arn = f"arn:aws:apigateway:{place.region}::/apis/{api['ApiId']}"
        row = prior.stored("api", api["Name"], api["ApiId"])
        if row is not None:
            found.append(Found("api", api["Name"], arn, dict(api.get("Tags") or {}), prior.kept(row, {})[1]))
            continue
        stages = [s["StageName"] for s in _pages(http, "get_stages", "Items", ApiId=api["ApiId"])]
        functions = {
            fn
            for i in _pages(http, "get_integrations", "Items", ApiId=api["ApiId"])
            if (fn := _function_of(str(i.get("IntegrationUri", ""))))
        }
        found.append(
            prior.stamp(
                Found(
                    "api",
                    api["Name"],
                    arn,
                    dict(api.get("Tags") or {}),
                    {"type": "HTTP", "api_id": api["ApiId"], "stages": stages, "functions": sorted(functions)},
                ),
                api["ApiId"],
            )
        )
    return found


# -- account-level --------------------------------------------------------------------------------


def accounts(clients: Clients, place: Place, prior: Prior | None = None) -> list[Found]:
    """The SES account and the Lambda account limits of this place; their facts are refreshed by
    the probes on every fast poll. The Lambda row also keeps the account's IAM alias, the name
    people know it by where aws.account_names does not give one (fleetwatch.accounts)."""
    alias = probes.account_alias(clients)
    return [
        Found("ses", "account", f"arn:aws:ses:{place.region}:{place.account}:account"),
        Found(
            "lambda_account",
            "account",
            f"arn:aws:lambda:{place.region}:{place.account}:account",
            facts={"account_alias": alias} if alias else {},
        ),
    ]


KINDS: dict[str, Callable[[Clients, Place, Prior], list[Found]]] = {
    "lambda": lambdas,
    "sqs": queues,
    "dynamodb": tables,
    "rds": databases,
    "rds_proxy": proxies,
    "schedule": schedules,
    "scheduler": scheduler_schedules,
    "api": apis,
    "account": accounts,
}
# Which resource kinds each discoverer owns, for marking what vanished as gone.
OWNS = {
    "lambda": ("lambda",),
    "sqs": ("sqs",),
    "dynamodb": ("dynamodb", INDEX_KIND),
    "rds": ("rds",),
    "rds_proxy": ("rds_proxy",),
    "schedule": ("schedule",),
    "scheduler": ("schedule",),
    "api": ("api",),
    "account": ("ses", "lambda_account"),
}


def discover_place(clients: Clients, place: Place, prior: Prior | None = None) -> tuple[list[Found], dict[str, str]]:
    """Every kind in one place. Returns what was found and, per failed discoverer, its error.
    With `prior`, only what changed (or whose detail is due for refresh) gets detail calls."""
    prior = prior or Prior()
    found: list[Found] = []
    errors: dict[str, str] = {}
    lambda_found: list[Found] = []
    for name, discover in KINDS.items():
        try:
            if name == "sqs":
                consumers: dict[str, list[str]] = {}
                for fn in lambda_found:
                    for src in fn.facts["event_sources"]:
                        consumers.setdefault(src["source_arn"], []).append(fn.name)
                got = queues(clients, place, prior, consumers=consumers)
            else:
                got = discover(clients, place, prior)
        except (ClientError, BotoCoreError, *UNREADABLE) as exc:
            errors[name] = describe_error(exc)
            continue
        if name == "lambda":
            lambda_found = got
        found.extend(got)
    _mark_async_targets(found)
    link_clusters(found)
    return found, errors


def _mark_async_targets(found: list[Found]) -> None:
    """EventBridge invokes a schedule's target function asynchronously (Lambda "Invoking a Lambda
    function asynchronously"): its async metrics tell whether the job really ran."""
    targets = {t for f in found if f.kind == "schedule" for t in f.facts.get("target_functions", [])}
    for f in found:
        if f.kind == "lambda" and f.name in targets:
            f.facts["async_invoked"] = True


def link_clusters(found: list[Found]) -> None:
    """A function that names an Aurora cluster endpoint uses the cluster's instances (the
    instances are what fleetwatch watches; DescribeDBInstances gives each its
    DBClusterIdentifier): `rds_cluster:c` adds `rds:<instance>` for each of them."""
    members: dict[str, list[str]] = {}
    for f in found:
        if f.kind == "rds" and f.facts.get("cluster"):
            members.setdefault(str(f.facts["cluster"]), []).append(f.name)
    for f in found:
        uses = f.facts.get("uses") if f.kind == "lambda" else None
        if uses and any(u.startswith("rds_cluster:") for u in uses):
            extra = {
                f"rds:{db}" for u in uses if u.startswith("rds_cluster:") for db in members.get(u.partition(":")[2], [])
            }
            f.facts["uses"] = sorted(set(uses) | extra)


# What reading an answer that does not have the shape AWS documents raises, in botocore's
# parsers or in ours: the source is marked errored (and asked again next poll), the rest goes on.
UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, IndexError)


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        op = exc.operation_name
        code = err.get("Code", "Error")
        hint = ""
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"):
            hint = " Grant it with the policy in iam/fleetwatch-readonly-policy.json."
        elif code in (
            "Throttling",
            "ThrottlingException",
            "TooManyRequestsException",
            "RequestThrottled",
            "ThrottledException",
        ):
            hint = " AWS kept throttling after every retry; this source is tried again next poll."
        return f"{op}: {code}: {err.get('Message', '')}{hint}"
    if isinstance(exc, NoCredentialsError) or isinstance(exc.__cause__, NoCredentialsError):
        return NO_CREDENTIALS  # also under AssumeRoleError: no credentials to call sts:AssumeRole with
    if isinstance(exc, AssumeRoleError):
        return str(exc)  # names the role, what AWS said and what to check
    if isinstance(exc, UNREADABLE):
        return (
            f"an answer from AWS could not be read ({type(exc).__name__}: "
            f"{str(exc)[:200]}); this source is tried again next poll"
        )
    return f"{type(exc).__name__}: {exc}"
