"""Create the fleet's control plane in moto through the same public APIs real AWS serves:
IAM roles, Lambda functions, SQS queues with redrive, DynamoDB tables, RDS parameter groups,
instances and proxies, SES identities, EventBridge schedules and API Gateway APIs."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from simulator.cloudwatch import insight_rule_names
from simulator.fleet import DEFAULT_ACCOUNT, Fleet, Resource

# An IAM account alias (botocore iam model 2010-05-08, accountAliasType: 3-63 characters).
ALIAS = re.compile(r"^[a-z0-9]([a-z0-9]|-(?!-)){1,61}[a-z0-9]$")

_CFG = Config(retries={"max_attempts": 1}, read_timeout=120, connect_timeout=5)
_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
_READER_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{DEFAULT_ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def _code() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        # A fixed timestamp: the same code gives the same CodeSha256 on every start, so a
        # restarted emulator does not look like a deploy of every function.
        info = zipfile.ZipInfo("handler.py", date_time=(2026, 1, 1, 0, 0, 0))
        zf.writestr(info, "def handler(event, context):\n    return {'ok': True}\n")
    return buf.getvalue()


class _Place:
    """boto3 clients for one account and region."""

    def __init__(self, endpoint: str, creds: dict[str, str], region: str) -> None:
        self.session = boto3.session.Session(region_name=region, **creds)
        self.endpoint, self.region = endpoint, region
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, endpoint_url=self.endpoint, config=_CFG)
        return self._clients[service]


def _credentials(endpoint: str, fleet: Fleet) -> dict[str, dict[str, str]]:
    base = {"aws_access_key_id": "AKIAFLEETWATCHDEMO01", "aws_secret_access_key": "emulated-secret-key"}
    sts = boto3.client("sts", endpoint_url=endpoint, region_name="us-east-1", config=_CFG, **base)
    out = {}
    for acct in fleet.accounts:
        if acct.id == DEFAULT_ACCOUNT:
            out[acct.id] = base
            continue
        c = sts.assume_role(
            RoleArn=f"arn:aws:iam::{acct.id}:role/OrganizationAccountAccessRole", RoleSessionName="fleet-provisioner"
        )["Credentials"]
        out[acct.id] = {
            "aws_access_key_id": c["AccessKeyId"],
            "aws_secret_access_key": c["SecretAccessKey"],
            "aws_session_token": c["SessionToken"],
        }
    return out


def provision(endpoint: str, fleet: Fleet, progress: Callable[[str], None] = lambda _: None) -> None:
    creds = _credentials(endpoint, fleet)
    code = _code()
    for acct in fleet.accounts:
        iam = _Place(endpoint, creds[acct.id], acct.regions[0])("iam")
        exec_role = iam.create_role(RoleName="fleet-lambda-exec", AssumeRolePolicyDocument=_TRUST)["Role"]["Arn"]
        iam.create_role(RoleName=acct.reader_role, AssumeRolePolicyDocument=_READER_TRUST)
        if ALIAS.match(acct.name):  # the name people know the account by, as its IAM alias (ListAccountAliases)
            iam.create_account_alias(AccountAlias=acct.name)
        for region in acct.regions:
            place = _Place(endpoint, creds[acct.id], region)
            here = [r for r in fleet.resources if r.account == acct.id and r.region == region]
            progress(f"account {acct.id} ({acct.name}) {region}: {len(here)} resources")
            _create_region(place, here, fleet, exec_role, code, progress)


def _environment(fn: Resource, fleet: Fleet, region: str) -> dict[str, str]:
    """What a real function's configuration carries about what it calls: the database's endpoint
    (as RDS and RDS Proxy name them), the table, the queue it sends to, the SES configuration set
    it sends mail with; and a secret-looking value
    that discovery must never keep."""
    env = {"LOG_LEVEL": "INFO", "PAYMENT_API_KEY": "sk_live_do_not_store_me"}
    if fn["database"]:
        proxy = fleet.by_uid.get(f"rds_proxy:{fn['database']}") is not None
        host = f"{fn['database']}.{'proxy-' if proxy else ''}c9akciq32.{region}.rds.amazonaws.com"
        env["DATABASE_URL"] = f"postgresql://app:hunter2@{host}:5432/app"
    if fn["table"]:
        env["TABLE_NAME"] = fn["table"]
    if fn["sends_mail"]:
        env["SES_CONFIGURATION_SET"] = "transactional"
        env["MAIL_FROM"] = "orders@shop.example.com"
    return env


def _create_region(
    place: _Place, here: list[Resource], fleet: Fleet, exec_role: str, code: bytes, progress: Callable[[str], None]
) -> None:
    kinds = {
        k: [r for r in here if r.kind == k]
        for k in ("lambda", "sqs", "dynamodb", "rds", "rds_proxy", "ses", "schedule", "api")
    }
    functions = kinds["lambda"]

    def make_function(fn: Resource) -> None:
        client = place("lambda")
        client.create_function(
            FunctionName=fn.name,
            Runtime=fn["runtime"],
            Role=exec_role,
            Handler="handler.handler",
            Code={"ZipFile": code},
            MemorySize=fn["memory"],
            Timeout=fn["timeout"],
            Tags=fn.tags,
            Environment={"Variables": _environment(fn, fleet, place.region)},
        )
        if fn["alias"]:  # released by alias: version 1 published, the alias invoking it
            version = client.publish_version(FunctionName=fn.name)["Version"]
            client.create_alias(FunctionName=fn.name, Name=fn["alias"], FunctionVersion=version)
        if fn["reserved"] is not None:
            client.put_function_concurrency(FunctionName=fn.name, ReservedConcurrentExecutions=int(fn["reserved"]))

    # Lambda creation dominates start-up for large fleets; a few threads overlap the HTTP round trips.
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, _ in enumerate(pool.map(make_function, functions), 1):
            if i % 1000 == 0:
                progress(f"  {i}/{len(functions)} functions")

    sqs = place("sqs")
    queue_arns: dict[str, str] = {}
    for q in sorted(kinds["sqs"], key=lambda r: r["dlq"] is not None):  # DLQs first
        attrs = {"MessageRetentionPeriod": str(q["retention"]), "VisibilityTimeout": str(q["visibility_timeout"])}
        if q["dlq"]:
            attrs["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": queue_arns[q["dlq"]], "maxReceiveCount": q["max_receive"]}
            )
        url = sqs.create_queue(QueueName=q.name, Attributes=attrs, tags=q.tags)["QueueUrl"]
        queue_arns[q.name] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        q.facts["queue_url"] = url
    for q in kinds["sqs"]:
        if q["consumer"]:
            place("lambda").create_event_source_mapping(
                EventSourceArn=queue_arns[q.name], FunctionName=q["consumer"], BatchSize=10
            )

    ddb = place("dynamodb")
    cw = place("cloudwatch")
    for t in kinds["dynamodb"]:
        schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
        attrs = [{"AttributeName": "pk", "AttributeType": "S"}]
        if t["sort_key"]:
            schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
            attrs.append({"AttributeName": "sk", "AttributeType": "S"})
        extra: dict[str, Any] = {"BillingMode": "PAY_PER_REQUEST"}
        if t["billing"] == "PROVISIONED":
            extra = {
                "BillingMode": "PROVISIONED",
                "ProvisionedThroughput": {
                    "ReadCapacityUnits": t["read_capacity"],
                    "WriteCapacityUnits": t["write_capacity"],
                },
            }
        indexes = []
        for index in t["indexes"] or []:  # each keyed on an attribute of its own, projecting every attribute
            attrs.append({"AttributeName": f"{index}-key", "AttributeType": "S"})
            indexes.append(
                {
                    "IndexName": index,
                    "KeySchema": [{"AttributeName": f"{index}-key", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                    **(
                        {"ProvisionedThroughput": extra["ProvisionedThroughput"]}
                        if "ProvisionedThroughput" in extra
                        else {}
                    ),
                }
            )
        if indexes:
            extra["GlobalSecondaryIndexes"] = indexes
        arn = ddb.create_table(
            TableName=t.name,
            KeySchema=schema,
            AttributeDefinitions=attrs,
            Tags=[{"Key": k, "Value": v} for k, v in t.tags.items()],
            **extra,
        )["TableDescription"]["TableArn"]
        t.facts["arn"] = arn
        for rule in insight_rule_names(t):
            # DynamoDB creates these managed rules itself; moto only stores them.
            cw.put_insight_rule(
                RuleName=rule,
                RuleState="ENABLED",
                RuleDefinition=json.dumps(
                    {
                        "Schema": {"Name": "CloudWatchLogRule", "Version": 1},
                        "AggregateOn": "Sum",
                        "Contribution": {"Keys": ["$.pk"], "Filters": []},
                        "LogFormat": "JSON",
                        "LogGroupNames": [],
                    }
                ),
            )

    rds = place("rds")
    for db in kinds["rds"]:
        extra = {}
        if db["max_connections"]:
            group = f"{db.name}-params"
            family = {"postgres": "postgres16", "mysql": "mysql8.0", "mariadb": "mariadb10.11"}[db["engine"]]
            try:
                rds.create_db_parameter_group(
                    DBParameterGroupName=group, DBParameterGroupFamily=family, Description=f"parameters for {db.name}"
                )
            except rds.exceptions.DBParameterGroupAlreadyExistsFault:
                pass  # botocore retried a create the emulator had already done (a slow answer under load)
            rds.modify_db_parameter_group(
                DBParameterGroupName=group,
                Parameters=[
                    {
                        "ParameterName": "max_connections",
                        "ParameterValue": str(db["max_connections"]),
                        "ApplyMethod": "pending-reboot",
                    }
                ],
            )
            extra["DBParameterGroupName"] = group
        rds.create_db_instance(
            DBInstanceIdentifier=db.name,
            DBInstanceClass=db["instance_class"],
            Engine=db["engine"],
            EngineVersion=db["engine_version"],
            AllocatedStorage=100,
            MasterUsername="app",
            MasterUserPassword="not-a-real-password-1",
            Tags=[{"Key": k, "Value": v} for k, v in db.tags.items()],
            **extra,
        )
    if kinds["rds_proxy"]:
        ec2 = place("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        azs = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]
            for i, az in enumerate(azs)
        ]
        secret = place("secretsmanager").create_secret(Name="fleet-db-credentials", SecretString='{"username":"app"}')[
            "ARN"
        ]
        for proxy in kinds["rds_proxy"]:
            rds.create_db_proxy(
                DBProxyName=proxy.name,
                EngineFamily=proxy["engine_family"],
                RoleArn=exec_role,
                VpcSubnetIds=subnets,
                Auth=[{"AuthScheme": "SECRETS", "SecretArn": secret, "IAMAuth": "DISABLED"}],
                Tags=[{"Key": k, "Value": v} for k, v in proxy.tags.items()],
            )
            rds.modify_db_proxy_target_group(
                DBProxyName=proxy.name,
                TargetGroupName="default",
                ConnectionPoolConfig={"MaxConnectionsPercent": proxy["max_connections_percent"]},
            )
            rds.register_db_proxy_targets(DBProxyName=proxy.name, DBInstanceIdentifiers=[proxy["target"]])

    for ses in kinds["ses"]:
        place("sesv2").create_email_identity(EmailIdentity=ses["sender"])

    events = place("events")
    groups: set[str] = set()
    for rule in kinds["schedule"]:
        target = fleet.get(f"lambda:{rule['target']}")
        if rule["service"] == "scheduler":
            _create_scheduler_schedule(place, rule, target, exec_role, groups)
            continue
        events.put_rule(
            Name=rule.name,
            ScheduleExpression=rule["expression"],
            State="ENABLED",
            Tags=[{"Key": k, "Value": v} for k, v in rule.tags.items()],
        )
        events.put_targets(Rule=rule.name, Targets=[{"Id": "target", "Arn": target.arn}])

    for api in kinds["api"]:
        _create_api(place, api, fleet)


def _create_scheduler_schedule(
    place: _Place, schedule: Resource, target: Resource, role: str, groups: set[str]
) -> None:
    """An EventBridge Scheduler schedule; its tags go on its group (Scheduler tags only groups)."""
    client = place("scheduler")
    group = schedule["group"]
    if group != "default" and group not in groups:
        client.create_schedule_group(Name=group, Tags=[{"Key": k, "Value": v} for k, v in schedule.tags.items()])
        groups.add(group)
    window = (
        {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": int(schedule["flexible_window"])}
        if schedule["flexible_window"]
        else {"Mode": "OFF"}
    )
    client.create_schedule(
        Name=schedule.name,
        GroupName=group,
        ScheduleExpression=schedule["expression"],
        ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow=window,
        State="ENABLED",
        Target={"Arn": target.arn, "RoleArn": role},
    )


def _create_api(place: _Place, api: Resource, fleet: Fleet) -> None:
    region = api.region
    if api["type"] == "REST":
        client = place("apigateway")
        rest = client.create_rest_api(name=api.name, tags=api.tags)
        root = next(r["id"] for r in client.get_resources(restApiId=rest["id"])["items"] if r["path"] == "/")
        for route, fn_name in api["routes"].items():
            method, path = route.split(" ", 1)
            res_id = client.create_resource(restApiId=rest["id"], parentId=root, pathPart=path.strip("/"))["id"]
            client.put_method(restApiId=rest["id"], resourceId=res_id, httpMethod=method, authorizationType="NONE")
            fn = fleet.get(f"lambda:{fn_name}")
            client.put_integration(
                restApiId=rest["id"],
                resourceId=res_id,
                httpMethod=method,
                type="AWS_PROXY",
                integrationHttpMethod="POST",
                uri=f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{fn.arn}/invocations",
            )
        client.create_deployment(restApiId=rest["id"], stageName=api["stage"])
        api.facts["api_id"] = rest["id"]
        return
    client = place("apigatewayv2")
    created = client.create_api(Name=api.name, ProtocolType="HTTP", Tags=api.tags)
    for route, fn_name in api["routes"].items():
        fn = fleet.get(f"lambda:{fn_name}")
        integration = client.create_integration(
            ApiId=created["ApiId"], IntegrationType="AWS_PROXY", IntegrationUri=fn.arn, PayloadFormatVersion="2.0"
        )
        client.create_route(
            ApiId=created["ApiId"], RouteKey=route, Target=f"integrations/{integration['IntegrationId']}"
        )
    client.create_stage(ApiId=created["ApiId"], StageName=api["stage"], AutoDeploy=True)
    api.facts["api_id"] = created["ApiId"]
