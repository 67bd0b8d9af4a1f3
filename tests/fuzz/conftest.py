"""The ledger fixture the fuzz tests share with tests/billing: the URL of a fresh ledger
database per test, on SQLite and, when METERLINE_TEST_POSTGRES_URL is set, PostgreSQL
(tests/billing/conftest.py says how)."""

from tests.billing.conftest import ledger_url  # noqa: F401 (a fixture, used by name)
