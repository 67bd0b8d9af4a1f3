"""API keys in the ledger (billing/apikeys.py, migration 0010): only the token's hash is
stored, a token finds its live key and nothing else; SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text

from billing import apikeys, migrate
from billing.apikeys import ApiKeyError
from billing.errors import NotFound
from tests.billing.conftest import Ledger

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_token_finds_its_live_key_only(ledger: Ledger) -> None:
    with ledger.Session.begin() as session:
        key, token = apikeys.create_key(session, "collector", ["read", "ingest", "read"], now=NOW)
        other, _ = apikeys.create_key(session, "other", ["support"], now=NOW)
    assert (
        key.scopes == "ingest read" and key.key_hash == hashlib.sha256(token.encode()).hexdigest()
    )
    with ledger.engine.connect() as conn:
        stored = conn.execute(text("SELECT * FROM api_keys")).all()
    assert token not in repr(stored)
    with ledger.Session() as session:
        found = apikeys.find_key(session, token)
        assert found is not None and found.id == key.id
        assert apikeys.find_key(session, token[:-1] + ("x" if token[-1] != "x" else "y")) is None
        assert apikeys.find_key(session, token.replace(key.prefix, other.prefix)) is None
        assert apikeys.find_key(session, "mlk_" + key.prefix) is None
        assert apikeys.find_key(session, "") is None
    with ledger.Session.begin() as session:
        _, revoked = apikeys.revoke_key(session, key.id, now=NOW)
        assert revoked and apikeys.revoke_key(session, key.id, now=NOW)[1] is False
        assert apikeys.find_key(session, token) is None
        with pytest.raises(NotFound, match="no API key 999"):
            apikeys.revoke_key(session, 999, now=NOW)


@pytest.mark.parametrize(
    ("name", "scopes", "fragment"),
    [
        ("", ["read"], "printable"),
        (" padded", ["read"], "printable"),
        ("x" * 101, ["read"], "printable"),
        ("tab\there", ["read"], "printable"),
        ("ok", [], "no scope"),
        ("ok", ["admin"], "unknown scope 'admin'"),
    ],
)
def test_a_bad_name_or_scope_is_refused(
    ledger: Ledger, name: str, scopes: list[str], fragment: str
) -> None:
    with ledger.Session.begin() as session, pytest.raises(ApiKeyError, match=fragment):
        apikeys.create_key(session, name, scopes, now=NOW)


def test_migration_0010_up_and_down(ledger: Ledger) -> None:
    assert "api_keys" in inspect(ledger.engine).get_table_names()
    migrate.downgrade(ledger.engine, "0009")
    assert "api_keys" not in inspect(ledger.engine).get_table_names()
    migrate.upgrade(ledger.engine)
    assert migrate.current(ledger.engine) == migrate.head()
