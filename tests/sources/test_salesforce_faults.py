"""Salesforce's faults, through the stand-in: each one a single `meterline: error:` line
with the README's exit code (2: change something first; 4: run again), no secret in the
output or the logs, and nothing stored (the ledger's engine does not matter: SQLite)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from meterline.cli.exits import ExitCode
from tests.billing.conftest import Ledger
from tests.sources.conftest import CPQ_MAPPING, Org, run_cli
from tests.sources.test_salesforce_sync import ledger_state

PASSWORD, TOKEN = "s3cret-Pass", "TOKENabc123"


def _session(org: Org) -> dict[str, str]:
    return org.standin.session_env()


def _login(org: Org) -> dict[str, str]:
    return org.standin.login_env("sync@example.com", PASSWORD, TOKEN)


def _fault(status: int, code: str, message: str, on: str) -> Callable[[Org], None]:
    return lambda org: org.store.fail_next(status, code, message, on=on)


FAULTS = [
    # (credentials, what goes wrong, exit code, what the error line says)
    (
        lambda org: {**_session(org), "METERLINE_SALESFORCE_SESSION_ID": "00Dexpired!XYZ"},
        None,
        ExitCode.REFUSED,
        "refused the session while reading Account (401 INVALID_SESSION_ID: Session expired"
        " or invalid): set a current METERLINE_SALESFORCE_SESSION_ID",
    ),
    (
        lambda org: {**_login(org), "METERLINE_SALESFORCE_PASSWORD": "wrong"},
        None,
        ExitCode.REFUSED,
        "refused the login of sync@example.com (INVALID_LOGIN: Invalid username, password,"
        " security token; or user locked out.)",
    ),
    (
        _login,
        _fault(401, "INVALID_SESSION_ID", "Session expired or invalid", "query_more"),
        ExitCode.UNAVAILABLE,
        "ended the session while reading Account (401 INVALID_SESSION_ID: Session expired or"
        " invalid); nothing was stored: run the sync again (it logs in afresh)",
    ),
    (
        _session,
        _fault(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable", "query_more"),
        ExitCode.UNAVAILABLE,
        "could not answer while reading Account (503 SERVER_UNAVAILABLE",
    ),
    (
        _session,
        _fault(400, "INVALID_QUERY_LOCATOR", "invalid query locator", "query_more"),
        ExitCode.UNAVAILABLE,
        "(400 INVALID_QUERY_LOCATOR: invalid query locator); nothing was stored: run the sync",
    ),
    (
        _session,
        _fault(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", "query"),
        ExitCode.UNAVAILABLE,
        "(403 REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded.)",
    ),
    (
        _session,
        _fault(403, "INSUFFICIENT_ACCESS", "insufficient access rights on object", "query"),
        ExitCode.REFUSED,
        "refused the request while reading Account (403 INSUFFICIENT_ACCESS",
    ),
    (
        lambda org: {**_session(org), "METERLINE_SALESFORCE_INSTANCE_URL": "https://127.0.0.1:1"},
        None,
        ExitCode.UNAVAILABLE,
        "Salesforce at 127.0.0.1:1 unreachable while reading Account (ConnectionError)",
    ),
]


@pytest.mark.parametrize(("credentials", "fault", "code", "fragment"), FAULTS, ids=range(8))
def test_a_fault_is_one_line_with_its_exit_code_and_stores_nothing(
    sqlite_ledger: Ledger,
    org: Org,
    credentials: Callable[[Org], dict[str, str]],
    fault: Callable[[Org], None] | None,
    code: int,
    fragment: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for n in range(3):
        org.subscription(org.account(f"cus_{n}", f"Customer {n}"), start=date(2026, 1, 1))
    env = credentials(org)
    if fault is not None:
        fault(org)
    caplog.set_level(logging.DEBUG)
    exit_code, out = org.sync(sqlite_ledger, env=env)
    assert exit_code == code, out
    errors = [line for line in out.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("meterline: error: Salesforce at "), out
    assert fragment in errors[0], out
    assert "Traceback" not in out
    for secret in (PASSWORD, TOKEN, env.get("METERLINE_SALESFORCE_SESSION_ID", PASSWORD)):
        assert secret not in out and secret not in caplog.text
    state = ledger_state(sqlite_ledger)
    assert not state["customers"] and not state["cursors"]
    # Once Salesforce answers again, the same sync stores everything.
    org.store.faults.clear()
    assert org.sync(sqlite_ledger)[0] == ExitCode.OK
    assert len(ledger_state(sqlite_ledger)["customers"]) == 3


def test_a_mapping_that_names_a_field_the_org_lacks_is_refused(
    sqlite_ledger: Ledger, org: Org, tmp_path: Path
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        CPQ_MAPPING.read_text().replace("Billing_Timezone__c", "Billing_Time_Zone__c")
    )
    code, out = run_cli(
        ["customers", "sync-salesforce", "--mapping", str(mapping)],
        {"METERLINE_LEDGER_URL": sqlite_ledger.url, **org.standin.session_env()},
    )
    assert code == ExitCode.REFUSED, out
    assert "refused the query while reading Account (400 INVALID_FIELD:" in out
    assert "No such column 'Billing_Time_Zone__c' on entity 'Account'" in out
    assert out.rstrip().endswith(
        "fix the field mapping (its object names, field paths and where conditions)"
    )
    assert len(out.strip().splitlines()) == 1


def test_a_mapping_file_with_problems_names_each(
    sqlite_ledger: Ledger, org: Org, tmp_path: Path
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        CPQ_MAPPING.read_text()
        .replace("    start: SBQQ__SubscriptionStartDate__c\n", "")
        .replace("customer_id:", "customerid:")
    )
    code, out = run_cli(
        ["customers", "sync-salesforce", "--mapping", str(mapping)],
        {"METERLINE_LEDGER_URL": sqlite_ledger.url, **org.standin.session_env()},
    )
    assert code == ExitCode.REFUSED, out
    assert out.splitlines()[0] == (
        f"meterline: error: {mapping}: 1 problem(s) in the Salesforce field mapping"
    )
    assert "did you mean 'customer_id'?" in out
    assert org.store.requests.total() == 0  # refused before Salesforce was asked
