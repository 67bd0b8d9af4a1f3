"""Inputs a breaker found faults with, kept as tests with the right values."""

from tests.billing.conftest import ledger, ledger_url  # noqa: F401
from tests.sinks.conftest import world  # noqa: F401
