"""The names people know accounts and resources by: `aws.account_names` first, then the
account's IAM alias found at discovery (the `account_alias` fact of its lambda_account row,
collector.discovery), else the bare id. Used by the dashboard and the digest alike."""

from __future__ import annotations

from typing import Any

from fleetwatch.store.dialect import dialect_of

# Resources that stand for a whole account in a Region (collector.discovery names them "account").
ACCOUNT_KINDS = {"ses": "SES sending", "lambda_account": "Lambda concurrency"}
KIND_WORDS = {
    "api": "API",
    "schedule": "schedule",
    "sqs": "queue",
    "lambda": "function",
    "dynamodb": "table",
    "rds": "database",
    "rds_proxy": "database proxy",
    "dynamodb_index": "table index",
}


def configured(cfg: Any) -> dict[str, str]:
    """aws.account_names ('ID=NAME' each) as {id: name}."""
    return dict(str(n).split("=", 1) for n in cfg["aws.account_names"])


def account_names(db: Any, names: dict[str, str]) -> dict[str, str]:
    """{account id: name}: the configured names over the IAM aliases in the store. `db` is a
    sqlite3 connection or sqlite_utils Database."""
    alias = dialect_of(db).json_text("facts", "account_alias")
    out = {
        str(a): str(name)
        for a, name in db.execute(
            f"SELECT account, {alias} FROM resources WHERE kind = 'lambda_account' AND {alias} IS NOT NULL"
        )
    }
    out.update(names)
    return out


def account_label(account: Any, names: dict[str, str]) -> str:
    """'payments-prod (123456789012)', or the id when nothing names it."""
    name = names.get(str(account))
    return f"{name} ({account})" if name else str(account)


def resource_label(r: dict[str, Any], names: dict[str, str], full: bool = True) -> str:
    """A resource as a person names it: 'API checkout-api', or for an account-wide resource
    'SES sending in payments-prod (123456789012) us-east-1' (never a bare 'ses:account'); not
    `full`: 'SES sending', for a place where `where` follows."""
    kind = r["kind"]
    if kind in ACCOUNT_KINDS and not full:
        return ACCOUNT_KINDS[kind]
    if kind in ACCOUNT_KINDS:
        return f"{ACCOUNT_KINDS[kind]} in {account_label(r['account'], names)} {r['region']}"
    return f"{KIND_WORDS.get(kind, kind)} {r['name']}"


def where(r: dict[str, Any], names: dict[str, str]) -> str:
    """The account and Region a resource lives in, for a second line under its name."""
    return f"{account_label(r['account'], names)} · {r['region']}"
