"""API keys: stored hashed, bearer auth with scopes, 401/403 as problem+json, the per-key
rate limit, no secret in the logs; the OpenAPI document and /healthz. On SQLite and on
PostgreSQL (the keys live in the ledger)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from meterline.cli import main
from meterline.jobs.apikeys import SCOPES, create_api_key, list_api_keys, revoke_api_key
from meterline.settings import settings
from tests.service.conftest import Service, StartService
from tests.service.test_events import assert_problem, event, ndjson

pytestmark = pytest.mark.single_warehouse

READS = [
    "/v1/customers/cus_00001/invoices",
    "/v1/invoices/1",
    "/v1/invoices/1/lines/1/explain",
    "/v1/customers/cus_00001/usage",
    "/v1/customers/cus_00001/preview",
]


@pytest.fixture
def keyed(start_service: StartService, ledger_url: str) -> Service:
    return start_service(ledger=ledger_url)


def key_rows(url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT name, prefix, key_hash, scopes FROM api_keys")))
    finally:
        engine.dispose()


def test_the_ledger_keeps_the_tokens_hash_never_the_token(keyed: Service) -> None:
    rows = {
        name: (prefix, digest, scopes)
        for name, prefix, digest, scopes in key_rows(keyed.config.ledger_url)
    }
    for scope, token in keyed.tokens.items():
        prefix, digest, scopes = rows[f"test-{scope}"]
        assert digest == hashlib.sha256(token.encode()).hexdigest() and scopes == scope
        assert token.startswith(f"mlk_{prefix}_") and len(token) == 4 + 12 + 1 + 43
        assert token not in str(rows)
    listed = list_api_keys(config=keyed.config)
    assert {k.name for k in listed} == {"test-ingest", "test-read", "test-support"}
    dumped = "".join(k.model_dump_json() for k in listed)
    assert not any(token in dumped for token in keyed.tokens.values())
    assert not any(digest in dumped for _, digest, _ in rows.values())


@pytest.mark.parametrize("path", ["/v1/events", *READS])
def test_no_key_is_401_with_a_bearer_challenge(keyed: Service, path: str) -> None:
    method = keyed.client.post if path == "/v1/events" else keyed.client.get
    response = method(path)
    doc = assert_problem(response, 401, "unauthorized", "Authorization: Bearer")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert doc["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    "header",
    [
        "Bearer mlk_000000000000_" + "A" * 43,
        "Bearer not-a-token",
        "Basic dXNlcjpwYXNz",
        "Bearer",
    ],
)
def test_a_token_of_no_key_is_401(keyed: Service, header: str) -> None:
    response = keyed.client.get(READS[0], headers={"Authorization": header})
    assert_problem(response, 401, "unauthorized")


def test_a_token_with_its_secret_changed_is_401(keyed: Service) -> None:
    token = keyed.tokens["read"]
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    response = keyed.client.get(READS[0], headers={"Authorization": f"Bearer {forged}"})
    assert_problem(response, 401, "unauthorized", "not a live API key")


def test_scopes(keyed: Service) -> None:
    # ingest may send events, and nothing else
    body = ndjson([event("k1")])
    assert keyed.post_events(body, scope="ingest").status_code == 200
    for path in READS:
        doc = assert_problem(keyed.client.get(path, headers=keyed.auth("ingest")), 403, "forbidden")
        assert "needs read or support" in doc["detail"] and "test-ingest" in doc["detail"]
    # read and support may read, and not send events
    for scope in ("read", "support"):
        response = keyed.client.get(READS[0], headers=keyed.auth(scope))
        assert response.status_code == 200, response.text
        assert response.json()["invoices"] == []
        assert_problem(keyed.post_events(body, scope=scope), 403, "forbidden", "needs ingest")


def test_a_revoked_key_is_refused_at_once(keyed: Service) -> None:
    created = create_api_key("temp", ["read"], config=keyed.config)
    headers = {"Authorization": f"Bearer {created.token}"}
    assert keyed.client.get(READS[0], headers=headers).status_code == 200
    info, revoked = revoke_api_key(created.key.id, config=keyed.config)
    assert revoked and info.revoked_at is not None
    assert_problem(keyed.client.get(READS[0], headers=headers), 401, "unauthorized")
    assert revoke_api_key(created.key.id, config=keyed.config)[1] is False


def test_the_rate_limit_is_per_key(start_service: StartService) -> None:
    service = start_service(service_rate_per_s=0.5, service_rate_burst=2)
    path = READS[0]
    for _ in range(2):
        assert service.client.get(path, headers=service.auth("read")).status_code == 200
    response = service.client.get(path, headers=service.auth("read"))
    assert_problem(response, 429, "rate-limited", "test-read", "0.5 requests per second")
    assert 1 <= int(response.headers["retry-after"]) <= 2
    # another key has its own bucket
    assert service.client.get(path, headers=service.auth("support")).status_code == 200


def test_no_secret_reaches_the_logs(keyed: Service, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = keyed.tokens["ingest"]
    digest = hashlib.sha256(token.encode()).hexdigest()
    keyed.post_events(ndjson([event("log1"), {"event_id": "bad"}]))
    keyed.client.get(READS[0], headers=keyed.auth("ingest"))  # 403
    keyed.client.get(READS[0], headers={"Authorization": f"Bearer {token}x"})  # 401
    keyed.client.get("/v1/invoices/999999", headers=keyed.auth("read"))  # 404
    keyed.post_events(b"[1", ndjson=False)  # 400
    assert any("/v1/events" in r.getMessage() for r in caplog.records)
    secrets = [token, token[4:], token.rsplit("_", 1)[1], digest, *keyed.tokens.values()]
    for record in caplog.records:
        text_ = (
            record.getMessage()
            + " "
            + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        )
        for secret in secrets:
            assert secret not in text_, record
        assert "Bearer" not in text_ and "authorization" not in text_.lower()


def test_openapi_lists_the_endpoints_and_healthz_needs_no_key(keyed: Service) -> None:
    doc = keyed.client.get("/openapi.json").json()
    assert {
        "/v1/events",
        "/v1/customers/{customer_id}/invoices",
        "/v1/invoices/{invoice_id}",
        "/v1/invoices/{invoice_id}/lines/{line_id}/explain",
        "/v1/customers/{customer_id}/usage",
        "/v1/customers/{customer_id}/preview",
        "/healthz",
    } <= set(doc["paths"])
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    explain = doc["paths"]["/v1/invoices/{invoice_id}/lines/{line_id}/explain"]["get"]
    assert "$ref" in str(explain["responses"]["200"])
    health = keyed.client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_unknown_paths_and_bad_ids_are_problems(keyed: Service) -> None:
    assert_problem(keyed.client.get("/v2/nothing"), 404, "not-found", "GET /v2/nothing")
    for bad in ("0", "9223372036854775808", "abc"):
        doc = assert_problem(
            keyed.client.get(f"/v1/invoices/{bad}", headers=keyed.auth("read")),
            400,
            "invalid-request",
            "invoice_id",
        )
        assert doc["errors"][0]["where"] == "path.invoice_id"


# --- the command line ---------------------------------------------------------------


def invoke(args: list[str], url: str) -> tuple[int, str]:
    settings.cache_clear()
    try:
        result = CliRunner().invoke(main, args, env={"METERLINE_LEDGER_URL": url})
    finally:
        settings.cache_clear()
    return result.exit_code, result.output


def test_apikeys_commands(keyed: Service, tmp_path: Path) -> None:
    url = keyed.config.ledger_url
    code, out = invoke(
        ["apikeys", "create", "--name", "collector", "--scope", "ingest", "--scope", "read"], url
    )
    assert code == 0, out
    token = out.split("Bearer): ", 1)[1].strip()
    assert "scopes: ingest, read" in out and token.startswith("mlk_")
    assert (
        keyed.client.get(READS[0], headers={"Authorization": f"Bearer {token}"}).status_code == 200
    )

    code, out = invoke(["apikeys", "list"], url)
    assert code == 0 and "collector" in out and token[:17] in out and token not in out
    code, out = invoke(["apikeys", "list", "--json"], url)
    assert code == 0 and token not in out and "key_hash" not in out

    key_id = next(k.id for k in list_api_keys(config=keyed.config) if k.name == "collector")
    assert invoke(["apikeys", "revoke", str(key_id)], url) == (
        0,
        f"API key {key_id} (collector) revoked\n",
    )
    code, out = invoke(["apikeys", "revoke", str(key_id)], url)
    assert code == 0 and "already revoked" in out
    code, out = invoke(["apikeys", "revoke", "999999"], url)
    assert code == 3 and "no API key 999999" in out
    code, out = invoke(["apikeys", "create", "--name", " x ", "--scope", "read"], url)
    assert code == 2 and "printable" in out


def test_the_commands_scopes_are_the_ledgers() -> None:
    from meterline.cli.apikeys import SCOPES as CLI_SCOPES

    assert CLI_SCOPES == SCOPES
