"""Account names from IAM ListAccountAliases where aws.account_names does not name an account
(botocore iam model 2010-05-08, ListAccountAliasesResponse.AccountAliases, at most one), on the
dashboard and in the digest; a role refused the call (AccessDenied) leaves the bare id and the
poll goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from alerts.digest import gather, render_text
from fleetwatch.accounts import account_names, where
from fleetwatch.clock import FakeClock
from fleetwatch.config import load_config
from fleetwatch.store import open_store
from tests.conftest import control, make_collector
from web.app import create_app

PROD, STAGING = "123456789012", "210987654321"  # the shop fleet's accounts, "shop-prod" and "shop-staging"


def _aliases(store: Any) -> dict[str, Any]:
    return {r["account"]: r["facts"].get("account_alias") for r in store.resources(kinds=["lambda_account"])}


def test_discovery_names_accounts_by_their_iam_alias(fleet: Any, tmp_path: Path, aws_calls: Any) -> None:
    with open_store(tmp_path / "fw.db") as store:
        results = make_collector(fleet, store, regions=["us-east-1"]).discover()
        assert all(r.status == "ok" for r in results), [r.error for r in results]
        assert aws_calls["iam:ListAccountAliases"] >= 2
        assert _aliases(store) == {PROD: "shop-prod", STAGING: "shop-staging"}
        # aws.account_names wins over the alias; the alias fills in the rest.
        assert account_names(store.db, {PROD: "payments"}) == {PROD: "payments", STAGING: "shop-staging"}
        ses = store.resources(account=STAGING, kinds=["ses"])[0]
        assert where(ses, account_names(store.db, {PROD: "payments"})) == f"shop-staging ({STAGING}) · us-east-1"
        assert "sandbox" not in render_text(
            gather(store, int(fleet.model.clock.now()))
        ) or f"shop-staging ({STAGING})" in render_text(gather(store, int(fleet.model.clock.now())))
        cfg = load_config(None, environ={"FLEETWATCH_STORE_PATH": str(tmp_path / "fw.db")})
    page = (
        TestClient(create_app(cfg, tmp_path / "fw.db", FakeClock(fleet.model.clock.now()), cache_ttl=0))
        .get("/resources")
        .text
    )
    assert f'shop-staging <span class="muted">({STAGING})</span>' in page
    assert ">SES sending</a>" in page and ">Lambda concurrency</a>" in page and ">account</a>" not in page


def test_a_role_refused_list_account_aliases_keeps_the_id_and_the_poll(fleet: Any, tmp_path: Path) -> None:
    control(
        fleet,
        "/__fleet__/faults",
        [
            {
                "service": "iam",
                "operation": "ListAccountAliases",
                "account": STAGING,
                "mode": "error",
                "code": "AccessDenied",
                "status": 403,
                "message": "not authorized to perform: iam:ListAccountAliases",
            }
        ],
    )
    try:
        with open_store(tmp_path / "fw.db") as store:
            report = make_collector(fleet, store, regions=["us-east-1"]).poll(force_discovery=True)
            assert report.errors == [], [e.error for e in report.errors]
            assert _aliases(store) == {PROD: "shop-prod", STAGING: None}
            assert len(store.resources(account=STAGING, kinds=["ses", "lambda_account"])) == 2, (
                "the account is still watched"
            )
            assert account_names(store.db, {}) == {PROD: "shop-prod"}
    finally:
        control(fleet, "/__fleet__/faults", [])
